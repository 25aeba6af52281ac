"""Errors raised by the training loop; each message says what to do next."""

from __future__ import annotations

from ..errors import TTSAdaptError


class CheckpointError(TTSAdaptError):
    """A checkpoint or adapter folder is missing, incomplete, or does not fit the model."""

    exit_code = 5


class TrainingDivergedError(TTSAdaptError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 6
