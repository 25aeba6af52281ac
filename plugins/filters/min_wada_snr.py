"""Filter ``min_wada_snr``: drop clips whose WADA-SNR (Kim & Stern 2008) is below ``min_db``."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from ttsadapt.components import Params
from ttsadapt.markers import hookimpl

from .metric_threshold import MetricThresholdFilter


class MinWadaSnrParams(Params):
    min_db: float = Field(15.0, description="lowest WADA-SNR kept, dB")
    metric: str = Field("wada_snr", description="registered metric that estimates the SNR")
    output: str | None = Field(None, description="metric output to use (default: its headline)")
    metric_params: dict[str, Any] = Field(
        default_factory=dict, description="parameters of the metric (if it has any)"
    )


class MinWadaSnrFilter(MetricThresholdFilter):
    name: ClassVar[str] = "min_wada_snr"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "Drop clips whose WADA-SNR is below min_db."
    threshold_field: ClassVar[str] = "min_db"
    Params = MinWadaSnrParams


@hookimpl
def ttsadapt_register_filters():
    return [MinWadaSnrFilter]
