"""Filter ``asr_cer``: drop clips whose audio does not match their text.

An ASR transcribes the clip and the character error rate against the manifest's text is computed
by the registered CER metric (default ``cer``); a clip above ``max_cer`` is dropped — a wrong
transcript, a cut file or another language. ``metric_params`` configure the ASR metric, e.g.
``{model = "tiny.en"}`` for the fast English-only Whisper (the default is Whisper base,
multilingual). A clip the ASR cannot handle (a language the model lacks, empty text) is dropped
with that reason. The reason of a dropped clip carries its CER: ``asr_cer: cer 0.870 > max_cer=0.3``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from ttsadapt.components import Params
from ttsadapt.markers import hookimpl

from .metric_threshold import MetricThresholdFilter


class AsrCerParams(Params):
    max_cer: float = Field(0.3, ge=0.0, description="highest character error rate kept")
    metric: str = Field("cer", description="registered metric that computes CER from ASR")
    output: str | None = Field(None, description="output to use (default: headline)")
    metric_params: dict[str, Any] = Field(
        default_factory=dict, description="parameters of the metric (e.g. {model: tiny.en})"
    )


class AsrCerFilter(MetricThresholdFilter):
    name: ClassVar[str] = "asr_cer"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "Drop clips whose ASR transcript's CER against the text exceeds max_cer."
    )
    keep_below: ClassVar[bool] = True
    threshold_field: ClassVar[str] = "max_cer"
    Params = AsrCerParams


@hookimpl
def ttsadapt_register_filters():
    return [AsrCerFilter]
