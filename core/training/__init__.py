"""The shared supervised training loop (HF Accelerate), its configuration, checkpoints and adapters.

Every supervised method (``lora``, ``lm_lora``, ``full_ft``) trains through :class:`Trainer` with
hyper-parameters from :class:`TrainingParams`; adapters are injected in place with PEFT through
:mod:`ttsadapt.training.adapters`.
"""

from typing import Any

from .config import TrainingParams
from .errors import CheckpointError, TrainingDivergedError


def __getattr__(name: str) -> Any:
    # torch/accelerate load only when training starts, so plugin discovery stays light
    if name in ("Trainer", "TrainOutcome"):
        from . import loop

        return getattr(loop, name)
    if name == "seed_everything":
        from .seeding import seed_everything

        return seed_everything
    raise AttributeError(name)


__all__ = [
    "CheckpointError",
    "TrainOutcome",
    "Trainer",
    "TrainingDivergedError",
    "TrainingParams",
    "seed_everything",
]
