"""``zero_shot``: the backbone as it is, the anchor row of every leaderboard."""

from __future__ import annotations

from ttsadapt.components import AdaptResult, Backbone, Method, RunContext, TrainingData
from ttsadapt.markers import hookimpl


class ZeroShot(Method):
    name = "zero_shot"
    version = "1"
    description = (
        "No adaptation: the pretrained backbone, the anchor every method is compared with."
    )
    trains = False

    def adapt(self, backbone: Backbone, data: TrainingData, ctx: RunContext) -> AdaptResult:
        total, _ = backbone.parameter_counts()
        return AdaptResult(
            trainable_params=0,
            total_params=total,
            adapter_bytes=0,
            selected={"by_val_loss": None, "by_dev_metric": None, "used": None},
            stats={"train_s": 0.0, "steps": 0, "steps_per_s": None, "peak_memory_mb": None},
        )


@hookimpl
def ttsadapt_register_methods():
    return [ZeroShot]
