"""Filter ``duration``: keep clips whose length lies in a window (default 0.5–20 s)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field, model_validator

from ttsadapt.components import DataFilter, FilterResult, Params
from ttsadapt.markers import hookimpl
from ttsadapt.types import Clip


class DurationParams(Params):
    min_s: float = Field(0.5, ge=0, description="shortest clip kept, seconds")
    max_s: float = Field(20.0, gt=0, description="longest clip kept, seconds")

    @model_validator(mode="after")
    def _ordered(self) -> DurationParams:
        if self.min_s > self.max_s:
            raise ValueError(f"min_s ({self.min_s}) must not exceed max_s ({self.max_s})")
        return self


class DurationFilter(DataFilter):
    name: ClassVar[str] = "duration"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "Keep clips between min_s and max_s seconds long."
    Params = DurationParams

    def apply(self, clips: Sequence[Clip], context: dict[str, Any] | None = None) -> FilterResult:
        import soundfile as sf

        kept: list[Clip] = []
        dropped: list[tuple[Clip, str]] = []
        lo, hi = self.params.min_s, self.params.max_s
        for clip in clips:
            duration = clip.duration_s
            if duration is None:
                try:
                    duration = clip.duration_s = float(sf.info(str(clip.audio)).duration)
                except Exception as exc:  # noqa: BLE001
                    dropped.append((clip, f"duration: cannot read {clip.audio}: {exc}"))
                    continue
            if duration < lo:
                dropped.append((clip, f"duration: {duration:.2f} s shorter than min_s={lo:g} s"))
            elif duration > hi:
                dropped.append((clip, f"duration: {duration:.2f} s longer than max_s={hi:g} s"))
            else:
                kept.append(clip)
        return FilterResult(kept, dropped)


@hookimpl
def ttsadapt_register_filters():
    return [DurationFilter]
