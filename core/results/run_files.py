"""What a run writes besides its records and scores: synthesis rows, training curves, the
checkpoint index.

* :class:`SynthesisRow`: a line of ``runs/<run_id>/synthesis.jsonl``, one per evaluation
  utterance: its id, speaker and language, the audio's duration, the synthesis timings (wall
  seconds, real-time factor, time to first audio, peak memory) and ``error`` (``null`` when it
  was spoken);
* :class:`CurveRow`: a line of ``runs/<run_id>/curves.jsonl``, one per logged training step: the
  ``step`` and what was measured there (training losses, learning rate, gradient norm, epoch;
  validation losses; the dev metric's score). A backbone's own loss parts (``train_loss_diff``,
  ...) are kept as written;
* :class:`CheckpointIndex`: ``runs/<run_id>/checkpoints.json``: the checkpoints kept
  (:class:`CheckpointEntry`: step, folder, validation loss, dev score), which was ``selected``
  (``by_val_loss``, ``by_dev_metric``, ``used``) and the ``dev_metric``.

Version 1 files carry no version (rows and the index alike); like score rows, a later version
writes ``schema``. Numbers are kept as written (an integer stays an integer), so a file read and
written again is unchanged.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .base import DiskModel, Number
from .record import OptionalText, Text

__all__ = ["CheckpointEntry", "CheckpointIndex", "CurveRow", "SynthesisRow"]


class SynthesisRow(DiskModel):
    """One evaluation utterance as synthesised: timings and error."""

    kind = "synthesis row"
    version_key = False

    item: Text
    speaker: OptionalText = None
    language: OptionalText = None
    duration_s: Number | None = None  # seconds of audio; 0.0 for an utterance that failed
    synth_s: Number | None = None  # wall seconds of its share of the batch
    rtf: Number | None = None  # synth_s / duration_s; None without audio
    first_audio_s: Number | None = None
    peak_rss_mb: Number | None = None
    peak_gpu_mb: Number | None = None  # None on CPU
    error: OptionalText = None

    @property
    def ok(self) -> bool:
        return not self.error


class CurveRow(DiskModel):
    """One logged training step: the numbers measured at ``step``."""

    kind = "curve row"
    version_key = False

    step: int
    epoch: Number | None = None
    lr: Number | None = None
    grad_norm: Number | None = None
    train_loss: Number | None = None
    val_loss: Number | None = None
    dev_metric: OptionalText = None
    dev_score: Number | None = None


class CheckpointEntry(BaseModel):
    """A kept checkpoint: its step, folder, validation loss and dev-metric score."""

    model_config = ConfigDict(extra="allow")

    step: int
    path: Text
    val_loss: Number | None = None
    dev_score: Number | None = None


class CheckpointIndex(DiskModel):
    """The checkpoints a training kept and which one was used."""

    kind = "checkpoint index"
    version_key = False

    checkpoints: list[CheckpointEntry] = Field(default_factory=list)
    # {by_val_loss, by_dev_metric, used}: steps, ``null`` where not chosen; ``{}`` before the end
    selected: dict[str, Any] | None = Field(default_factory=dict)
    dev_metric: OptionalText = None

    @property
    def used(self) -> int | None:
        """The step whose checkpoint the run used (``None``: the last weights, or not chosen)."""
        return (self.selected or {}).get("used")
