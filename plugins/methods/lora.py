"""``lora``: PEFT LoRA on the backbone's attention projections for a scope (default ``all``).

For VoxCPM2, scope ``all`` is q/k/v/o of the base LM, the residual LM and the LocDiT, with
feed-forward layers and the AudioVAE frozen; B starts at zero; alpha defaults to 2 x rank.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ttsadapt.components import Backbone, RunContext
from ttsadapt.markers import hookimpl
from ttsadapt.training.config import TrainingParams
from ttsadapt.training.supervised import SupervisedMethod


class LoraParams(TrainingParams):
    scope: Literal["lm", "decoder", "all"] = "all"
    rank: int = Field(8, ge=1)
    alpha: float | None = Field(None, gt=0, description="default 2 x rank")
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: list[str] | None = Field(None, description="explicit layer names (overrides scope)")


class Lora(SupervisedMethod):
    name = "lora"
    version = "1"
    description = "LoRA (PEFT, zero-initialised B, alpha = 2 x rank) on the backbone's scope."
    Params = LoraParams

    def configure(self, backbone: Backbone, ctx: RunContext) -> None:
        from ttsadapt.training.adapters import apply_lora

        p = self.params
        apply_lora(backbone, p.scope, p.rank, p.alpha, p.dropout, targets=p.targets)


@hookimpl
def ttsadapt_register_methods():
    return [Lora]
