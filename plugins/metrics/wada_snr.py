"""WADA-SNR (Kim & Stern, Interspeech 2008): blind SNR of speech in additive noise, in dB.

The statistic is G = log(mean|z|) - mean(log|z|) over the waveform's samples. Kim & Stern model
clean speech amplitudes as Gamma-distributed (shape 0.4) and the noise as Gaussian; G then depends
only on the SNR, and the estimate is the SNR whose model G equals the measured one (linear
interpolation in a table, -20 to 100 dB in 1 dB steps, clamped to that range).

The table in ``wada_snr_table.json`` is computed from that model by :func:`compute_table` (common
random numbers, 16 M samples); its ends are the closed forms 0.4094 (pure Gaussian noise) and
log(0.4) - digamma(0.4) = 1.6447 (pure Gamma speech), which the test suite checks.

Silence handling: a clip that is empty, non-finite, shorter than 0.1 s or whose peak is below one
16-bit step gets an error row (shared validation). Samples that are exactly zero (digital-silence
padding, which carries no amplitude information) are left out of the statistic; a clip with fewer
than 160 non-zero samples is an error row. The statistic is scale-invariant, so a quiet clip gets
the same value as the same clip played loud; every value is finite and within [-20, 100] dB.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np

from ttsadapt.components import Metric, MetricOutput, Params
from ttsadapt.errors import ItemError
from ttsadapt.markers import hookimpl
from ttsadapt.metric_helpers import prepare_audio, score_each
from ttsadapt.types import EvalItem, ItemScore

from . import _provenance

TABLE_FILE = "wada_snr_table.json"
SNR_MIN_DB, SNR_MAX_DB = -20.0, 100.0
SPEECH_GAMMA_SHAPE = 0.4
MIN_NONZERO_SAMPLES = 160


def compute_table(n_samples: int = 16_000_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Model G for SNRs of -20..100 dB: speech ~ Gamma(0.4) amplitudes, noise ~ N(0, sigma^2).

    The sign of the speech sample does not matter (the noise is symmetric), so
    z = a + sigma * n with a ~ Gamma(0.4, 1) and sigma set by SNR = E[a^2] / sigma^2.
    """
    rng = np.random.default_rng(seed)
    a = rng.gamma(SPEECH_GAMMA_SHAPE, 1.0, n_samples)
    n = rng.standard_normal(n_samples)
    speech_power = SPEECH_GAMMA_SHAPE * (SPEECH_GAMMA_SHAPE + 1.0)  # E[a^2] for scale 1
    snr_db = np.arange(SNR_MIN_DB, SNR_MAX_DB + 1.0)
    g = np.empty_like(snr_db)
    for i, snr in enumerate(snr_db):
        sigma = np.sqrt(speech_power / 10.0 ** (snr / 10.0))
        z = np.abs(a + sigma * n)
        g[i] = np.log(z.mean()) - np.log(np.maximum(z, 1e-300)).mean()
    return snr_db, g


@functools.lru_cache(maxsize=1)
def load_table() -> tuple[np.ndarray, np.ndarray]:
    data = json.loads(resources.files(__package__).joinpath(TABLE_FILE).read_text())
    return np.asarray(data["snr_db"], dtype=np.float64), np.asarray(data["g"], dtype=np.float64)


def wada_statistic(audio: np.ndarray) -> float:
    """G = log(mean|z|) - mean(log|z|) over the non-zero samples (scale-invariant)."""
    mag = np.abs(audio[audio != 0].astype(np.float64))
    if mag.size < MIN_NONZERO_SAMPLES:
        raise ItemError(
            f"silent audio: only {mag.size} non-zero samples, at least {MIN_NONZERO_SAMPLES} needed"
        )
    mag /= mag.max()
    return float(np.log(mag.mean()) - np.log(mag).mean())


def wada_snr_db(audio: np.ndarray) -> float:
    """Blind SNR estimate in dB, clamped to the table's range [-20, 100]."""
    snr_db, g = load_table()
    stat = wada_statistic(audio)
    # G rises with SNR; np.interp clamps outside the table to its end values.
    return float(np.interp(stat, g, snr_db))


class WadaSNR(Metric):
    name = "wada_snr"
    version = "1"
    description = "WADA-SNR blind signal-to-noise ratio (Kim & Stern 2008), dB, -20..100."
    outputs = (
        MetricOutput(
            "snr_db",
            True,
            (SNR_MIN_DB, SNR_MAX_DB),
            "dB",
            "estimated speech-to-noise power ratio, clamped to the WADA table's -20..100 dB",
        ),
    )
    sample_rate = None  # works at any rate

    class Params(Params):
        pass

    def setup(self) -> None:
        load_table()

    def model_provenance(self) -> dict[str, Any]:
        table = _provenance.package_file(__package__, TABLE_FILE)
        return _provenance.cached(
            self, lambda: _provenance.provenance({}, {TABLE_FILE: _provenance.file_sha256(table)})
        )

    def score(self, items: Sequence[EvalItem]) -> list[ItemScore]:
        return score_each(
            items,
            lambda it: {"snr_db": wada_snr_db(prepare_audio(it.audio, it.sample_rate))},
        )


@hookimpl
def ttsadapt_register_metrics():
    return [WadaSNR]


if __name__ == "__main__":  # regenerate the table: python -m ttsadapt.plugins.metrics.wada_snr
    from pathlib import Path

    snr, g = compute_table()
    out = Path(__file__).with_name(TABLE_FILE)
    out.write_text(
        json.dumps(
            {
                "description": "WADA-SNR model table: G statistic per SNR, Gamma(0.4) speech in "
                "Gaussian noise; made by compute_table(n_samples=16_000_000, seed=0)",
                "snr_db": snr.tolist(),
                "g": [round(x, 6) for x in g.tolist()],
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {out}")
