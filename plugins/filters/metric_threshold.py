"""Shared machinery of the filters that keep a clip when a metric clears a threshold.

Not a plugin itself: ``min_wada_snr``, ``min_dnsmos`` and ``asr_cer`` subclass it. The metric
comes from ``context["registry"]`` (the runner's component registry) by name; a clip the metric
cannot score is dropped with the metric's error as its reason. ``metric_params`` (a table of the
metric's own parameters, e.g. ``{model = "tiny.en"}`` for ``cer``) configure the metric; they are
validated before any clip is scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from ttsadapt.components import DataFilter, FilterResult
from ttsadapt.errors import ConfigError
from ttsadapt.evaluation import resolve_metric_params, score_clips
from ttsadapt.types import Clip


def registry_from(context: dict[str, Any] | None) -> Any:
    registry = (context or {}).get("registry")
    if registry is None:
        from ttsadapt.registry import build_registry

        registry = build_registry()
    return registry


class MetricThresholdFilter(DataFilter):
    """Keep clips whose metric value is ``>= threshold`` (or ``<=`` when ``keep_below``)."""

    keep_below: ClassVar[bool] = False
    threshold_field: ClassVar[str] = "min_value"

    def apply(self, clips: Sequence[Clip], context: dict[str, Any] | None = None) -> FilterResult:
        registry = registry_from(context)
        metric = self.params.metric
        if metric not in registry.names("metric"):
            raise ConfigError(
                f"filter '{self.name}' needs metric '{metric}', which no plugin registers "
                f"(known metrics: {', '.join(registry.names('metric')) or 'none'})"
            )
        metric_params = resolve_metric_params(
            registry, metric, self.params.metric_params, f"filter '{self.name}' metric_params"
        )
        threshold = getattr(self.params, self.threshold_field)
        kept: list[Clip] = []
        dropped: list[tuple[Clip, str]] = []
        for clip, (value, error) in zip(
            clips, score_clips(clips, metric, registry, self.params.output, params=metric_params)
        ):
            if value is None:
                dropped.append((clip, f"{self.name}: could not score with {metric}: {error}"))
            elif (value > threshold) if self.keep_below else (value < threshold):
                rel = ">" if self.keep_below else "<"
                dropped.append(
                    (
                        clip,
                        f"{self.name}: {metric} {value:.3f} {rel} {self.threshold_field}={threshold:g}",
                    )
                )
            else:
                kept.append(clip)
        return FilterResult(kept, dropped)
