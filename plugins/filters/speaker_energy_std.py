"""Filter ``speaker_energy_std``: drop every clip of a speaker whose energy variability is low.

The seed study found LoRA gains for speakers whose pooled frame-energy standard deviation is above
~13 dB and degradation below ~10 dB; this filter keeps a speaker only when
``energy_std_db >= min_energy_std_db`` (definition in :mod:`ttsadapt.data.acoustics`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field

from ttsadapt.audio import load_audio
from ttsadapt.components import DataFilter, FilterResult, Params
from ttsadapt.data.acoustics import EnergyAccumulator, frame_energy_db
from ttsadapt.errors import ItemError
from ttsadapt.markers import hookimpl
from ttsadapt.types import Clip


class SpeakerEnergyStdParams(Params):
    min_energy_std_db: float = Field(
        10.0, ge=0, description="a speaker's pooled frame-energy std must reach this, dB"
    )


def clip_energy_accumulator(clip: Clip) -> EnergyAccumulator:
    """Frame-energy sums of one clip, cached on the clip (``extra["energy_sums_db"]``)."""
    cached = clip.extra.get("energy_sums_db")
    acc = EnergyAccumulator()
    if isinstance(cached, list) and len(cached) == 3:
        acc.n, acc.total, acc.total_sq = int(cached[0]), float(cached[1]), float(cached[2])
        return acc
    audio, sr = load_audio(clip.audio)
    acc.add(frame_energy_db(audio, sr))
    clip.extra["energy_sums_db"] = [acc.n, acc.total, acc.total_sq]
    return acc


class SpeakerEnergyStdFilter(DataFilter):
    name: ClassVar[str] = "speaker_energy_std"
    version: ClassVar[str] = "1"
    level: ClassVar[str] = "speaker"
    description: ClassVar[str] = (
        "Drop speakers whose pooled frame-energy std is below min_energy_std_db."
    )
    Params = SpeakerEnergyStdParams

    def apply(self, clips: Sequence[Clip], context: dict[str, Any] | None = None) -> FilterResult:
        by_speaker: dict[str, list[Clip]] = defaultdict(list)
        for clip in clips:
            by_speaker[clip.speaker].append(clip)
        kept: list[Clip] = []
        dropped: list[tuple[Clip, str]] = []
        limit = self.params.min_energy_std_db
        for speaker, group in by_speaker.items():
            total = EnergyAccumulator()
            usable: list[Clip] = []
            for clip in group:
                try:
                    total.merge(clip_energy_accumulator(clip))
                    usable.append(clip)
                except ItemError as exc:
                    dropped.append((clip, f"{self.name}: {exc}"))
            stats = total.stats()
            if stats is None or stats.energy_std_db < limit:
                value = "no frames" if stats is None else f"{stats.energy_std_db:.2f} dB"
                reason = (
                    f"{self.name}: speaker {speaker!r} energy std {value} "
                    f"< min_energy_std_db={limit:g}"
                )
                dropped.extend((clip, reason) for clip in usable)
            else:
                kept.extend(usable)
        return FilterResult(kept, dropped)


@hookimpl
def ttsadapt_register_filters():
    return [SpeakerEnergyStdFilter]
