"""Filter ``min_dnsmos``: drop clips whose DNS-MOS (default: the metric's headline, OVRL) is low."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from ttsadapt.components import Params
from ttsadapt.markers import hookimpl

from .metric_threshold import MetricThresholdFilter


class MinDnsmosParams(Params):
    min_score: float = Field(3.0, ge=1.0, le=5.0, description="lowest DNS-MOS kept (1–5)")
    metric: str = Field("dnsmos", description="registered DNS-MOS metric")
    output: str | None = Field(None, description="output to use (default: headline, OVRL)")
    metric_params: dict[str, Any] = Field(
        default_factory=dict, description="parameters of the metric ({variant: personalized})"
    )


class MinDnsmosFilter(MetricThresholdFilter):
    name: ClassVar[str] = "min_dnsmos"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "Drop clips whose DNS-MOS is below min_score."
    threshold_field: ClassVar[str] = "min_score"
    Params = MinDnsmosParams


@hookimpl
def ttsadapt_register_filters():
    return [MinDnsmosFilter]
