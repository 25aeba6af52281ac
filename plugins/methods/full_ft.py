"""``full_ft``: every parameter trains except the codec/VAE the backbone lists as frozen.

Upstream NeuTTS and VoxCPM fine-tune fully at lr 1e-5, which is this method's default.
"""

from __future__ import annotations

from pydantic import Field

from ttsadapt.components import Backbone, RunContext
from ttsadapt.markers import hookimpl
from ttsadapt.training.config import TrainingParams
from ttsadapt.training.supervised import SupervisedMethod, freeze_prefixes


class FullFtParams(TrainingParams):
    lr: float = Field(1e-5, gt=0, description="peak learning rate (upstream full FT uses 1e-5)")


class FullFt(SupervisedMethod):
    name = "full_ft"
    version = "1"
    description = "Full fine-tuning of all parameters except the codec/VAE."
    Params = FullFtParams

    def configure(self, backbone: Backbone, ctx: RunContext) -> None:
        for param in backbone.module.parameters():
            param.requires_grad_(True)
        frozen = freeze_prefixes(backbone.module, list(backbone.frozen_modules()))
        ctx.logger.info("full_ft: %d parameters frozen (codec/VAE)", frozen)


@hookimpl
def ttsadapt_register_methods():
    return [FullFt]
