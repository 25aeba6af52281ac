import numpy as np

from ttsadapt.plugins.metrics.pesq import PESQ
from ttsadapt.plugins.metrics.stoi import STOI
from ttsadapt.types import EvalItem


def test_reference_based_scores(librivox):
    _, a, sr, _ = librivox[1]
    noisy = a + 0.03 * np.random.default_rng(0).standard_normal(a.size).astype(np.float32)
    items = [
        EvalItem(id="same", audio=a, sample_rate=sr, reference_audio=a, reference_sample_rate=sr),
        EvalItem(
            id="noisy", audio=noisy, sample_rate=sr, reference_audio=a, reference_sample_rate=sr
        ),
        EvalItem(id="noref", audio=a, sample_rate=sr),
    ]
    for metric, out, top in (
        (PESQ(), "pesq", 4.5),
        (PESQ(mode="nb"), "pesq", 4.4),
        (STOI(), "stoi", 0.99),
    ):
        same, noisy_s, noref = metric.score(items)
        assert same.values[out] > top
        assert noisy_s.values[out] < same.values[out] - 0.05
        assert noref.error == "not applicable: no reference recording"
