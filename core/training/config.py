"""The shared training hyper-parameters: one pydantic model reused by every supervised method.

Defaults reproduce the VoxCPM2 LoRA recipe (the VoxCPM2 adaptation study): AdamW (0.9, 0.999, weight decay 0.01),
peak lr 1e-4, 200 warm-up steps then cosine decay, batch 4 x 4 accumulation, clip 1.0, 10k steps,
validation and a checkpoint every 500 steps, bf16 autocast on GPU and fp32 on CPU.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..components import Params


class TrainingParams(Params):
    """Hyper-parameters of the shared loop; every value is a suite param."""

    lr: float = Field(1e-4, gt=0, description="peak learning rate")
    warmup_steps: int = Field(200, ge=0, description="linear warm-up from 0 to lr")
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final lr as a share of lr")
    max_steps: int = Field(10_000, ge=1, description="optimizer steps")
    batch_size: int = Field(4, ge=1, description="examples per micro-batch")
    grad_accum: int = Field(4, ge=1, description="micro-batches per optimizer step")
    clip_grad_norm: float | None = Field(1.0, description="max gradient norm; null = no clipping")
    weight_decay: float = Field(0.01, ge=0)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_eps: float = Field(1e-8, gt=0)
    val_every: int = Field(500, ge=1, description="validate every N optimizer steps (and last)")
    save_every: int = Field(500, ge=1, description="checkpoint every N optimizer steps (and last)")
    max_val_batches: int | None = Field(None, ge=1, description="cap on validation batches")
    log_every: int = Field(10, ge=1, description="write a train-loss row every N steps")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="auto = bf16 on GPU, fp32 on CPU"
    )
    select: Literal["val_loss", "dev_metric"] = Field(
        "val_loss", description="which checkpoint the backbone keeps after training"
    )
    resume: bool = Field(True, description="continue from the last complete checkpoint")
    deterministic: bool = Field(False, description="ask torch for deterministic kernels")

    @model_validator(mode="after")
    def _check(self) -> TrainingParams:
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ValueError("clip_grad_norm must be > 0, or null to disable clipping")
        return self
