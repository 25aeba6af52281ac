"""Filter ``asr_cer``: drop clips whose audio does not match their text.

An ASR transcribes the clip and the character error rate against the manifest's text is computed
by the registered CER metric (default ``cer``); a clip above ``max_cer`` is dropped — a wrong
transcript, a cut file or another language.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ttsadapt.components import Params
from ttsadapt.markers import hookimpl

from .metric_threshold import MetricThresholdFilter


class AsrCerParams(Params):
    max_cer: float = Field(0.3, ge=0.0, description="highest character error rate kept")
    metric: str = Field("cer", description="registered metric that computes CER from ASR")
    output: str | None = Field(None, description="output to use (default: headline)")


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
