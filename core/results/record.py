"""The metric record: ``runs/<run_id>/records/<metric>.json``, one per run x metric.

What the runner's ``metric_record`` builds: the run's identity (suite, backbone, method, their
versions and parameters, data recipe, seed, ``[synthesis]`` settings), whether the run is the
suite's anchor (``is_anchor``), the metric and its version, ``outputs`` (per output: mean, 95 %
interval, count, direction, range, unit), which output is the ``headline``, item counts (scored,
failed, not applicable), model sizes, status and provenance.

Two conventions of older files are resolved here, once, so readers see fields:

* ``headline``: a record that does not name its headline output (or names one it lacks) gets the
  output flagged ``"headline": true``, else the output named like the metric, else the first;
* ``is_anchor``: ``None`` when the record does not say (a reader that knows the suite's anchor
  method decides, see :meth:`MetricRecord.anchor`);
* ``in_mean_rank``: ``None`` when the record does not say; :meth:`MetricRecord.ranked` then
  counts every metric but the runner's latency record.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SkipValidation,
    model_validator,
)

from ..latency import LATENCY
from .base import DiskModel

__all__ = ["MetricRecord", "OutputSummary"]


def _direction(value: Any) -> Any:
    """``higher_is_better``: True, False, or None for an output without a direction."""
    return None if value is None else bool(value)


def _mapping(value: Any) -> Any:
    """Parameters: ``null`` reads as no parameters."""
    return {} if value is None else value


Text = str  # numbers are read as text (a version ``1`` as ``"1"``): see DiskModel's config
OptionalText = str | None
# Parameter tables are the components' own (any JSON object): ``null`` reads as ``{}``, the rest
# is taken as written, unchecked (a leaderboard reads thousands of records; checking every key of
# every parameter table would cost more than the rest of the record).
Params = Annotated[SkipValidation[dict[str, Any]], BeforeValidator(_mapping)]


class OutputSummary(BaseModel):
    """One output of a metric record: its mean over the run's items and the interval."""

    model_config = ConfigDict(extra="allow")

    mean: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    higher_is_better: Annotated[bool | None, BeforeValidator(_direction)] = True
    range: list[float | None] | None = None
    unit: str | None = ""
    headline: bool | None = None  # older records flagged the headline output here

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        """``(low, high)`` of the output's range; None where it is not given."""
        rng = self.range or [None, None]
        return rng[0], rng[1] if len(rng) > 1 else None


class MetricRecord(DiskModel):
    """One run x metric: identity, outputs, headline, counts, sizes, status."""

    kind = "metric record"

    run_id: Text
    metric: Text
    metric_version: Text
    outputs: dict[str, OutputSummary | None]
    headline: OptionalText = None
    status: Text = "ok"
    error: OptionalText = None

    suite: OptionalText = None
    suite_version: OptionalText = None
    backbone: OptionalText = None
    backbone_version: OptionalText = None
    backbone_params: Params = Field(default_factory=dict)
    method: OptionalText = None
    method_version: OptionalText = None
    method_params: Params = Field(default_factory=dict)
    is_anchor: bool | None = None
    data_recipe: Any = None  # a recipe's name, or its table
    seed: Any = None
    synthesis_settings: Params = Field(default_factory=dict)
    train_id: OptionalText = None
    metric_params: Params = Field(default_factory=dict)

    n_items: int | None = None
    n_errors: int | None = None
    n_not_applicable: int | None = None
    errors: dict[str, int] = Field(default_factory=dict)
    trainable_params: int | None = None
    total_params: int | None = None
    adapter_bytes: int | None = None
    human: dict[str, Any] | None = None  # metrics made from listening tests: raters, agreement
    # whether the headline counts in a system's mean rank (a quality metric); None: version 1,
    # where every record counts but the runner's latency record (timings are shown, not ranked)
    in_mean_rank: bool | None = None

    @model_validator(mode="after")
    def _resolve_headline(self) -> MetricRecord:
        if self.outputs and (self.headline is None or self.headline not in self.outputs):
            self.headline = self._guess_headline()
        return self

    def _guess_headline(self) -> str:
        for name, out in self.outputs.items():
            if out is not None and out.headline is True:
                return name
        if self.metric in self.outputs:
            return self.metric
        return next(iter(self.outputs))

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def output_order(self, preferred: str | None = None) -> list[str]:
        """The output names, headline first: ``preferred`` when the record has it, else the
        record's headline."""
        head = preferred if preferred in self.outputs else self.headline
        return [head] + [o for o in self.outputs if o != head] if head else []

    def ranked(self) -> bool:
        """Whether the headline counts in the mean rank: ``in_mean_rank``, else (version 1
        records) every metric but the runner's latency record."""
        if self.in_mean_rank is not None:
            return self.in_mean_rank
        return self.metric != LATENCY

    def anchor(self, anchor_method: str | None = None) -> bool:
        """Whether this run is its suite's anchor: the record's ``is_anchor``; for a record that
        does not say, whether its method is ``anchor_method`` (the suite's ``anchor``)."""
        if self.is_anchor is not None:
            return self.is_anchor
        return anchor_method is not None and self.method == anchor_method
