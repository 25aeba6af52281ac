"""The shared supervised training loop (HF Accelerate), its configuration, checkpoints and adapters.

Every supervised method (``lora``, ``lm_lora``, ``full_ft``) trains through :class:`Trainer` with
hyper-parameters from :class:`TrainingParams`; adapters are injected in place with PEFT through
:mod:`ttsadapt.training.adapters`.
"""

from .config import TrainingParams
from .errors import CheckpointError, TrainingDivergedError
from .loop import Trainer, TrainOutcome
from .seeding import seed_everything

__all__ = [
    "CheckpointError",
    "TrainOutcome",
    "Trainer",
    "TrainingDivergedError",
    "TrainingParams",
    "seed_everything",
]
