"""Bootstrap intervals and Wilcoxon p-values checked against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from ttsadapt.stats import (
    bootstrap_ci,
    bootstrap_ci_many,
    paired_wilcoxon,
    paired_wilcoxon_many,
    stars,
)


@pytest.fixture(scope="module")
def skewed():
    # CER-like: skewed, bounded below
    return np.random.default_rng(3).gamma(1.5, 0.05, size=80)


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_bootstrap_matches_scipy(skewed, method):
    lo, hi = bootstrap_ci(skewed, n_resamples=4000, method=method)
    ref = scipy_stats.bootstrap(
        (skewed,), np.mean, n_resamples=20000, method=method, random_state=0
    ).confidence_interval
    width = ref.high - ref.low
    assert abs(lo - ref.low) < 0.05 * width
    assert abs(hi - ref.high) < 0.05 * width
    assert lo < skewed.mean() < hi


def test_bca_is_asymmetric_for_skewed_data(skewed):
    lo, hi = bootstrap_ci(skewed, n_resamples=4000)
    m = skewed.mean()
    assert hi - m > m - lo  # right-skewed data: longer upper arm


def test_bootstrap_is_deterministic_and_ignores_nan(skewed):
    with_nan = np.concatenate([skewed, [np.nan, np.inf]])
    assert bootstrap_ci(skewed, seed=1) == bootstrap_ci(with_nan, seed=1)
    assert bootstrap_ci(skewed, seed=1) != bootstrap_ci(skewed, seed=2)


def test_bootstrap_degenerate_samples():
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert bootstrap_ci([4.2]) == (4.2, 4.2)
    assert bootstrap_ci([3.0, 3.0, 3.0]) == (3.0, 3.0)


def test_bootstrap_many_equals_one_at_a_time(skewed):
    samples = [skewed, skewed[:40] + 10.0, skewed[:7], np.array([])]
    low, high = bootstrap_ci_many(samples)
    for s, lo, hi in zip(samples, low, high):
        ref = bootstrap_ci(s)
        np.testing.assert_allclose([lo, hi], ref, equal_nan=True)


def test_bootstrap_coverage_close_to_nominal():
    rng = np.random.default_rng(11)
    hits = 0
    trials = 200
    samples = [rng.normal(1.0, 1.0, 40) for _ in range(trials)]
    low, high = bootstrap_ci_many(samples, n_resamples=1000, method="percentile")
    hits = int(((low < 1.0) & (1.0 < high)).sum())
    assert 0.88 <= hits / trials <= 0.99


def test_wilcoxon_matches_scipy_with_ties_and_zeros():
    rng = np.random.default_rng(5)
    a = np.round(rng.normal(3.0, 0.3, 60), 1)
    b = np.round(a + rng.normal(0.1, 0.2, 60), 1)
    b[:5] = a[:5]  # zero differences
    assert paired_wilcoxon(a, b) == pytest.approx(scipy_stats.wilcoxon(a, b).pvalue, rel=1e-12)
    small_a, small_b = a[10:22], b[10:22] + 0.05  # small sample: exact distribution
    assert paired_wilcoxon(small_a, small_b) == pytest.approx(
        scipy_stats.wilcoxon(small_a, small_b).pvalue, rel=1e-12
    )


def test_wilcoxon_degenerate_cases_give_nan():
    assert math.isnan(paired_wilcoxon([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]))  # all differences zero
    assert math.isnan(paired_wilcoxon([1.0], [2.0]))  # fewer than two pairs
    assert math.isnan(paired_wilcoxon([], []))
    with pytest.raises(ValueError, match="equally long"):
        paired_wilcoxon([1.0, 2.0], [1.0])


def test_wilcoxon_drops_nan_pairs():
    rng = np.random.default_rng(2)
    a = rng.normal(size=30)
    b = a + 0.5 + rng.normal(0, 0.3, 30)
    a_nan = a.copy()
    a_nan[3] = np.nan
    keep = np.arange(30) != 3
    assert paired_wilcoxon(a_nan, b) == pytest.approx(scipy_stats.wilcoxon(a[keep], b[keep]).pvalue)


def test_wilcoxon_many_equals_separate_calls():
    rng = np.random.default_rng(8)
    diffs = [rng.normal(0.2, 1.0, 50) for _ in range(5)] + [rng.normal(0, 1, 20), np.zeros(9)]
    many = paired_wilcoxon_many(diffs)
    for d, p in zip(diffs[:-1], many[:-1]):
        assert p == pytest.approx(scipy_stats.wilcoxon(d).pvalue, rel=1e-9)
    assert math.isnan(many[-1])


@pytest.mark.parametrize(
    "p, expected",
    [
        (0.0005, "***"),
        (0.001, "**"),
        (0.009, "**"),
        (0.01, "*"),
        (0.049, "*"),
        (0.05, ""),
        (0.7, ""),
        (float("nan"), ""),
        (None, ""),
    ],
)
def test_stars(p, expected):
    assert stars(p) == expected
