"""Acoustic conditions that make a synthetic speaker low- or high-variability by construction.

Applied to each clip in this order: level (``level_db`` plus a per-clip gain drawn from
N(0, ``gain_spread_db``)), reverberation (an exponentially decaying noise impulse response with the
given RT60), additive noise (white, pink or brown) at the given SNR over *active* speech power,
then a safety scale-down if the peak would exceed −0.1 dBFS (recorded as ``peak_limited``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.signal import fftconvolve

from .acoustics import active_power


def colored_noise(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise: ``white`` (flat), ``pink`` (1/f) or ``brown`` (1/f²) power spectrum."""
    white = rng.standard_normal(n)
    if kind == "white" or n < 4:
        noise = white
    else:
        spec = np.fft.rfft(white)
        f = np.arange(spec.size, dtype=np.float64)
        f[0] = 1.0
        spec = spec / (np.sqrt(f) if kind == "pink" else f)
        noise = np.fft.irfft(spec, n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def room_impulse_response(rt60_s: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic RIR: direct path plus exponentially decaying noise (−60 dB at ``rt60_s``)."""
    n = max(1, int(rt60_s * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60_s)  # ln(1000) = 6.9078
    tail[: int(0.002 * sample_rate)] = 0.0  # 2 ms gap before the reflections
    rir = 0.5 * tail / (np.sqrt(np.sum(tail**2)) + 1e-12)
    rir[0] = 1.0
    return rir


def apply_condition(
    audio: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    *,
    level_db: float = -24.0,
    gain_spread_db: float = 0.0,
    rt60_s: float | None = None,
    snr_db: float | None = None,
    noise: str = "white",
    pad_s: float = 0.15,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return the conditioned clip and what was applied (gain, SNR, RT60, peak limiting)."""
    x = np.asarray(audio, dtype=np.float64)
    pad = int(pad_s * sample_rate)
    x = np.concatenate([np.zeros(pad), x, np.zeros(pad)])
    if rt60_s:
        rir = room_impulse_response(rt60_s, sample_rate, rng)
        x = fftconvolve(x, rir)[: x.size + int(0.5 * rt60_s * sample_rate)]
    gain_db = float(rng.normal(0.0, gain_spread_db)) if gain_spread_db > 0 else 0.0
    target_db = level_db + gain_db
    power = active_power(x, sample_rate)
    if power > 0:
        x = x * np.sqrt(10 ** (target_db / 10) / power)
    if snr_db is not None:
        speech_power = active_power(x, sample_rate)
        n = colored_noise(x.size, noise, rng)
        x = x + n * np.sqrt(speech_power / 10 ** (snr_db / 10))
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    limited = peak > 0.989
    if limited:
        x = x * (0.989 / peak)
    applied = {
        "level_db": round(target_db, 3),
        "gain_db": round(gain_db, 3),
        "rt60_s": rt60_s,
        "snr_db": snr_db,
        "noise": noise if snr_db is not None else None,
        "peak_limited": limited,
    }
    return x.astype(np.float32), applied
