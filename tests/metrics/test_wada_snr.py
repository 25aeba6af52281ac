"""WADA-SNR validation on clean recorded speech (codec2-examples) mixed with white noise.

Measured (6 clips, seed 0), mean error in dB of the estimate at each true SNR:
0 dB +0.75, 5 dB +0.73, 10 dB +1.46, 15 dB +2.57, 20 dB +4.82, 25 dB +8.91, 30 dB +18.66.
"""

import itertools

import numpy as np
import pytest
from scipy.special import digamma

from ttsadapt.plugins.metrics.wada_snr import WadaSNR, compute_table, load_table, wada_snr_db
from ttsadapt.types import EvalItem

CLEAN = ["hts1a", "hts2a", "big_dog", "cross", "morig", "forig"]


def mix(clean, snr_db, rng):
    clean = clean.astype(np.float64)
    noise = rng.standard_normal(clean.size)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return clean + noise


def test_table_matches_model_limits_and_regenerates():
    snr, g = load_table()
    assert snr[0] == -20 and snr[-1] == 100 and np.all(np.diff(g) > 0)
    gaussian = np.log(np.sqrt(2 / np.pi)) + (np.euler_gamma + np.log(2)) / 2
    assert abs(g[0] - gaussian) < 2e-3  # -20 dB: essentially Gaussian noise
    assert abs(g[-1] - (np.log(0.4) - digamma(0.4))) < 0.03  # 100 dB: Gamma(0.4) speech
    _, g_small = compute_table(n_samples=400_000)
    assert np.max(np.abs(g_small - g)) < 0.01


def test_error_against_known_snr(codec2, capsys):
    rng = np.random.default_rng(0)
    errors = {}
    for snr in range(0, 35, 5):
        errors[snr] = np.mean([wada_snr_db(mix(codec2[n][0], snr, rng)) - snr for n in CLEAN])
    with capsys.disabled():
        print(
            "\nWADA-SNR mean error (dB) by true SNR:", {k: round(v, 2) for k, v in errors.items()}
        )
    for snr in (0, 5, 10, 15):
        assert abs(errors[snr]) < 3.0
    estimates = [snr + e for snr, e in errors.items()]
    assert all(b > a for a, b in itertools.pairwise(estimates))


def test_gain_invariant_and_silence(librivox):
    _, audio, sr, _ = librivox[0]
    m = WadaSNR()
    padded = np.concatenate([np.zeros(sr, np.float32), audio, np.zeros(sr, np.float32)])
    quiet = audio * 1e-3
    items = [
        EvalItem(id="x", audio=audio, sample_rate=sr),
        EvalItem(id="loud", audio=audio * 0.5 / np.abs(audio).max(), sample_rate=sr),
        EvalItem(id="quiet", audio=quiet, sample_rate=sr),
        EvalItem(id="padded", audio=padded, sample_rate=sr),
        EvalItem(id="silence", audio=np.zeros(sr, np.float32), sample_rate=sr),
        EvalItem(id="tiny", audio=np.full(sr, 1e-7, np.float32), sample_rate=sr),
    ]
    base, loud, q, pad, sil, tiny = m.score(items)
    assert loud.values["snr_db"] == pytest.approx(base.values["snr_db"], abs=1e-3)
    assert q.values["snr_db"] == pytest.approx(base.values["snr_db"], abs=0.05)
    assert pad.values["snr_db"] == pytest.approx(base.values["snr_db"], abs=1e-6)
    assert sil.error.startswith("silent audio") and tiny.error.startswith("silent audio")
    assert -20 <= base.values["snr_db"] <= 100
