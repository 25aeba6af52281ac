"""Filter ``speaker_dnsmos_std``: drop every clip of a speaker whose DNS-MOS dispersion is low.

The seed study relates adaptation gains to the dispersion of DNS-MOS across a speaker's training
clips as well as to energy variability. A speaker is kept when the standard deviation of its
clips' DNS-MOS (headline output unless ``output`` is set) reaches ``min_std``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from ttsadapt.components import DataFilter, FilterResult, Params
from ttsadapt.errors import ConfigError
from ttsadapt.evaluation import resolve_metric_params, score_clips
from ttsadapt.markers import hookimpl
from ttsadapt.types import Clip

from .metric_threshold import registry_from


class SpeakerDnsmosStdParams(Params):
    min_std: float = Field(0.15, ge=0, description="lowest std of a speaker's DNS-MOS kept")
    metric: str = Field("dnsmos", description="registered DNS-MOS metric")
    output: str | None = Field(None, description="output to use (default: headline, OVRL)")
    metric_params: dict[str, Any] = Field(
        default_factory=dict, description="parameters of the metric ({variant: personalized})"
    )


class SpeakerDnsmosStdFilter(DataFilter):
    name: ClassVar[str] = "speaker_dnsmos_std"
    version: ClassVar[str] = "1"
    level: ClassVar[str] = "speaker"
    description: ClassVar[str] = "Drop speakers whose DNS-MOS standard deviation is below min_std."
    Params = SpeakerDnsmosStdParams

    def apply(self, clips: Sequence[Clip], context: dict[str, Any] | None = None) -> FilterResult:
        registry = registry_from(context)
        metric = self.params.metric
        if metric not in registry.names("metric"):
            raise ConfigError(
                f"filter '{self.name}' needs metric '{metric}', which no plugin registers"
            )
        metric_params = resolve_metric_params(
            registry, metric, self.params.metric_params, f"filter '{self.name}' metric_params"
        )
        values = score_clips(clips, metric, registry, self.params.output, params=metric_params)
        by_speaker: dict[str, list[tuple[Clip, float]]] = defaultdict(list)
        kept: list[Clip] = []
        dropped: list[tuple[Clip, str]] = []
        for clip, (value, error) in zip(clips, values):
            if value is None:
                dropped.append((clip, f"{self.name}: could not score with {metric}: {error}"))
            else:
                by_speaker[clip.speaker].append((clip, value))
        for speaker, group in by_speaker.items():
            std = float(np.std([v for _, v in group])) if len(group) > 1 else 0.0
            if std < self.params.min_std:
                reason = (
                    f"{self.name}: speaker {speaker!r} {metric} std {std:.3f} over {len(group)} "
                    f"clips < min_std={self.params.min_std:g}"
                )
                dropped.extend((c, reason) for c, _ in group)
            else:
                kept.extend(c for c, _ in group)
        return FilterResult(kept, dropped)


@hookimpl
def ttsadapt_register_filters():
    return [SpeakerDnsmosStdFilter]
