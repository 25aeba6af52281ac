"""Bootstrap intervals (plain and cluster), Wilcoxon p-values and Holm's adjustment, checked
against scipy and against references written here from the textbook definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from ttsadapt.stats import (
    Bootstrapper,
    bootstrap_ci,
    bootstrap_ci_many,
    cluster_bootstrap_ci,
    cluster_sums,
    holm_adjust,
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
    hits = int(((low < 1.0) & (high > 1.0)).sum())
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


@pytest.mark.parametrize("n", [10, 30])
def test_wilcoxon_many_equals_separate_calls_when_some_samples_have_ties_or_zeros(n):
    # scipy picks exact / permutation / normal approximation for a whole batch at once: a sample
    # with ties or zeros must not move the clean samples of the same length off the exact test
    rng = np.random.default_rng(12)
    clean = [rng.normal(0.4, 1.0, n) for _ in range(3)]
    tied = np.round(rng.normal(0.4, 1.0, n), 1)
    tied[:2] = [0.5, -0.5]
    zeros = rng.normal(0.4, 1.0, n)
    zeros[:3] = 0.0
    diffs = [clean[0], tied, clean[1], zeros, clean[2]]
    many = paired_wilcoxon_many(diffs)
    for d, p in zip(diffs, many):
        assert p == pytest.approx(scipy_stats.wilcoxon(d).pvalue, rel=1e-12)


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


# --------------------------------------------------------------------------- cluster bootstrap


@pytest.fixture(scope="module")
def clustered():
    """40 utterances with 1 to 3 values each (seeds; some failed), a strong utterance effect."""
    rng = np.random.default_rng(21)
    item_effect = rng.gamma(2.0, 0.5, size=40)
    values, labels = [], []
    for i, effect in enumerate(item_effect):
        for _ in range(1 + i % 3):
            values.append(effect + rng.normal(0, 0.1))
            labels.append(f"utt{i:02d}")
    return np.array(values), np.array(labels)


def _scipy_cluster_ci(values, labels, method, n_resamples=20000):
    """``scipy.stats.bootstrap`` resampling cluster ids; the statistic is the mean of every value
    of the drawn clusters (its BCa jackknife leaves out one cluster at a time)."""
    ids = list(dict.fromkeys(labels.tolist()))
    sums = np.array([values[labels == i].sum() for i in ids])
    sizes = np.array([(labels == i).sum() for i in ids], dtype=float)

    def pooled_mean(idx, axis=-1):
        return sums[idx].sum(axis=axis) / sizes[idx].sum(axis=axis)

    return scipy_stats.bootstrap(
        (np.arange(len(ids)),),
        pooled_mean,
        vectorized=True,
        n_resamples=n_resamples,
        method=method,
        random_state=0,
    ).confidence_interval


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_cluster_bootstrap_matches_scipy_resampling_cluster_ids(clustered, method):
    values, labels = clustered
    lo, hi = cluster_bootstrap_ci(values, labels, n_resamples=4000, method=method)
    ref = _scipy_cluster_ci(values, labels, method)
    width = ref.high - ref.low
    assert abs(lo - ref.low) < 0.05 * width
    assert abs(hi - ref.high) < 0.05 * width
    assert lo < values.mean() < hi


def test_cluster_bootstrap_is_wider_than_treating_rows_as_independent(clustered):
    values, labels = clustered
    lo, hi = cluster_bootstrap_ci(values, labels, method="percentile")
    row_lo, row_hi = bootstrap_ci(values, method="percentile")
    # ~2 near-identical values per utterance: the row bootstrap is ~sqrt(2) too narrow
    assert (hi - lo) > 1.25 * (row_hi - row_lo)


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_one_value_per_cluster_is_the_plain_bootstrap_exactly(skewed, method):
    labels = [f"utt{i}" for i in range(skewed.size)]
    assert cluster_bootstrap_ci(skewed, labels, method=method) == bootstrap_ci(
        skewed, method=method
    )
    ref = scipy_stats.bootstrap(
        (skewed,), np.mean, n_resamples=20000, method=method, random_state=0
    ).confidence_interval
    lo, hi = cluster_bootstrap_ci(skewed, labels, n_resamples=4000, method=method)
    assert abs(lo - ref.low) < 0.05 * (ref.high - ref.low)
    assert abs(hi - ref.high) < 0.05 * (ref.high - ref.low)


def test_cluster_sums_order_and_missing_values():
    sums, sizes = cluster_sums([1.0, 2.0, np.nan, 4.0, 8.0, np.inf], ["b", "a", "c", "b", "d", "d"])
    np.testing.assert_array_equal(sums, [5.0, 2.0, 8.0])  # b, a, d: first appearance; c is empty
    np.testing.assert_array_equal(sizes, [2.0, 1.0, 1.0])
    assert [a.size for a in cluster_sums([np.nan], ["x"])] == [0, 0]
    with pytest.raises(ValueError, match="equally long"):
        cluster_sums([1.0, 2.0], ["a"])


def test_ci_clusters_many_equals_one_at_a_time(clustered):
    values, labels = clustered
    samples = [cluster_sums(values, labels), cluster_sums(values[:30] + 5, labels[:30])]
    samples.append((np.empty(0), np.empty(0)))
    low, high = Bootstrapper().ci_clusters(samples)
    assert (low[0], high[0]) == cluster_bootstrap_ci(values, labels)
    assert (low[1], high[1]) == cluster_bootstrap_ci(values[:30] + 5, labels[:30])
    assert np.isnan(low[2]) and np.isnan(high[2])
    with pytest.raises(ValueError, match="at least 1"):
        Bootstrapper().ci_clusters([(np.array([1.0, 2.0]), np.array([1.0, 0.0]))])


def test_cluster_bootstrap_constant_cluster_means_give_the_value():
    # every utterance's mean is 2.0: every resample's mean is 2.0
    lo, hi = cluster_bootstrap_ci([1.0, 3.0, 2.0, 0.0, 4.0], ["a", "a", "b", "c", "c"])
    assert (lo, hi) == (2.0, 2.0)


# --------------------------------------------------------------------------- Holm


def _holm_textbook(p):
    """Holm (1979), as written in textbooks: sort the m p-values; the i-th smallest (1-based) gets
    max over j <= i of min(1, (m - j + 1) * p_(j)). NaN is no test."""
    tested = [(v, i) for i, v in enumerate(p) if not math.isnan(v)]
    tested.sort()
    m = len(tested)
    out = [math.nan] * len(p)
    running = 0.0
    for rank, (value, index) in enumerate(tested, start=1):
        running = max(running, min(1.0, (m - rank + 1) * value))
        out[index] = running
    return out


def test_holm_matches_textbook_definition():
    rng = np.random.default_rng(4)
    p = np.concatenate([rng.uniform(0, 0.01, 5), rng.uniform(0, 1, 40), [np.nan, 0.0, 1.0]])
    p[7] = p[8]  # a tie
    rng.shuffle(p)
    np.testing.assert_allclose(holm_adjust(p), _holm_textbook(p.tolist()), rtol=1e-15)


def test_holm_small_worked_example():
    # m = 4: 0.01 * 4 = 0.04; 0.02 * 3 = 0.06; 0.03 * 2 = 0.06; max(0.06, 0.5) = 0.5
    np.testing.assert_allclose(holm_adjust([0.03, 0.5, 0.01, 0.02]), [0.06, 0.5, 0.04, 0.06])
    assert holm_adjust([]).size == 0
    assert np.isnan(holm_adjust([np.nan])).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm_adjust([0.2, 1.5])


def test_holm_matches_statsmodels_when_installed():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(9).uniform(0, 0.2, 30)
    ref = multitest.multipletests(p, method="holm")[1]
    np.testing.assert_allclose(holm_adjust(p), ref, rtol=1e-12)
