"""``lm_lora``: LoRA on the language model's attention q/k/v only (rank 8, alpha 16): the NeuTTS
recipe."""

from __future__ import annotations

from pydantic import Field

from ttsadapt.components import Backbone, RunContext
from ttsadapt.errors import ConfigError
from ttsadapt.markers import hookimpl
from ttsadapt.training.config import TrainingParams
from ttsadapt.training.supervised import SupervisedMethod


class LmLoraParams(TrainingParams):
    rank: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    projections: tuple[str, ...] = Field(
        ("q_proj", "k_proj", "v_proj"), description="last name part of the LM layers to adapt"
    )


class LmLora(SupervisedMethod):
    name = "lm_lora"
    version = "1"
    description = "LoRA on the LM's attention q/k/v only (rank 8, alpha 16 by default)."
    Params = LmLoraParams

    def configure(self, backbone: Backbone, ctx: RunContext) -> None:
        from ttsadapt.training.adapters import apply_lora

        p = self.params
        lm = backbone.target_modules("lm")
        targets = [n for n in lm if n.rsplit(".", 1)[-1] in p.projections]
        if not targets:
            raise ConfigError(
                f"lm_lora: none of backbone '{backbone.name}''s LM layers ends in "
                f"{list(p.projections)} (LM layers look like {lm[:3]}); set `projections`"
            )
        apply_lora(backbone, "lm", p.rank, p.alpha, p.dropout, targets=targets)


@hookimpl
def ttsadapt_register_methods():
    return [LmLora]
