"""Frame energy statistics: the acoustic-variability numbers of the data cards and filters.

Frame energy is ``10·log10(mean(x²))`` over 25 ms frames with a 10 ms hop, in dB relative to a
full-scale square wave (a full-scale sine is −3 dB). Frames more than ``floor_below_max_db`` (60 dB)
below the clip's loudest frame are left out: they are digital silence or padding, and would
otherwise dominate the spread with arbitrary numbers (−100 dB and below). A speaker's
``energy_std_db`` is the standard deviation of the *pooled* frame energies of all its clips, so
both the dynamics inside clips and the level differences between clips count — the quantity the
seed study relates to adaptation gains (> 13 dB: gains, < 10 dB: degradation).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

FRAME_S = 0.025
HOP_S = 0.010
FLOOR_BELOW_MAX_DB = 60.0
_EPS = 1e-12


def frame_energy_db(
    audio: np.ndarray,
    sample_rate: int,
    frame_s: float = FRAME_S,
    hop_s: float = HOP_S,
    floor_below_max_db: float | None = FLOOR_BELOW_MAX_DB,
) -> np.ndarray:
    """Energies (dB) of the clip's frames, silence below the floor removed.

    A clip shorter than one frame is one frame. Returns an empty array for an empty clip.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.size == 0:
        return np.zeros(0)
    frame = max(1, round(frame_s * sample_rate))
    hop = max(1, round(hop_s * sample_rate))
    if x.size < frame:
        x = np.pad(x, (0, frame - x.size))
    n_frames = 1 + (x.size - frame) // hop
    # running sum of squares: O(n) whatever the frame length
    csum = np.concatenate(([0.0], np.cumsum(x * x)))
    starts = np.arange(n_frames) * hop
    power = (csum[starts + frame] - csum[starts]) / frame
    energy = 10.0 * np.log10(np.maximum(power, _EPS))
    if floor_below_max_db is not None:
        energy = energy[energy >= energy.max() - floor_below_max_db]
    return energy


@dataclass
class EnergyStats:
    """Pooled frame-energy statistics of one or more clips (all in dB)."""

    energy_mean_db: float
    energy_std_db: float
    frames: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "energy_mean_db": self.energy_mean_db,
            "energy_std_db": self.energy_std_db,
            "frames": self.frames,
        }


class EnergyAccumulator:
    """Pools frame energies of many clips without keeping them: running sums of x and x²."""

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0
        self.total_sq = 0.0

    def add(self, energies_db: np.ndarray) -> None:
        self.n += int(energies_db.size)
        self.total += float(energies_db.sum())
        self.total_sq += float(np.square(energies_db).sum())

    def merge(self, other: EnergyAccumulator) -> None:
        self.n += other.n
        self.total += other.total
        self.total_sq += other.total_sq

    def stats(self) -> EnergyStats | None:
        if self.n == 0:
            return None
        mean = self.total / self.n
        var = max(0.0, self.total_sq / self.n - mean * mean)
        return EnergyStats(float(mean), float(np.sqrt(var)), self.n)


def pooled_energy_stats(clips_audio: Iterable[tuple[np.ndarray, int]]) -> EnergyStats | None:
    """Pooled stats over ``(audio, sample_rate)`` pairs; ``None`` when there is no frame."""
    acc = EnergyAccumulator()
    for audio, sr in clips_audio:
        acc.add(frame_energy_db(audio, sr))
    return acc.stats()


def clipped_fraction(audio: np.ndarray, threshold: float = 0.999) -> float:
    """Share of samples at or beyond ``threshold`` of full scale."""
    x = np.asarray(audio)
    if x.size == 0:
        return 0.0
    return float(np.count_nonzero(np.abs(x) >= threshold)) / x.size


def active_power(audio: np.ndarray, sample_rate: int, below_max_db: float = 30.0) -> float:
    """Mean power of the frames within ``below_max_db`` of the loudest (speech, not pauses)."""
    energy = frame_energy_db(audio, sample_rate, floor_below_max_db=below_max_db)
    if energy.size == 0:
        return 0.0
    return float(np.mean(10.0 ** (energy / 10.0)))
