"""Statistics for the leaderboard: bootstrap confidence intervals, paired Wilcoxon tests, Holm's
adjustment, stars.

Everything is vectorised numpy so a leaderboard over thousands of records stays fast:

* A bootstrap resample of ``n`` values is a column of *counts* (how often each value was drawn), so
  the means of ``R`` resamples are one matrix product ``values @ counts / n`` (float32, centred).
  :class:`Bootstrapper` caches the count matrix per ``n`` and applies it to every column of that
  length at once; the single-sample :func:`bootstrap_ci` uses the same construction, so both give
  identical intervals.
* A *cluster* bootstrap (:func:`cluster_bootstrap_ci`, :meth:`Bootstrapper.ci_clusters`) resamples
  clusters (an utterance with all its seeds' rows) instead of rows: cluster ``i`` enters as the sum
  ``S_i`` and the number ``W_i`` of its values, and a resample's mean is
  ``(counts @ S) / (counts @ W)``, the mean of every row of the drawn clusters. With one value per
  cluster it is the ordinary bootstrap, number for number.
* Intervals are percentile or BCa (bias-corrected and accelerated, Efron 1987; the acceleration
  comes from the jackknife of the mean, leaving out one cluster at a time, which has a closed form).
  They agree with ``scipy.stats.bootstrap`` to Monte-Carlo precision (checked in
  ``tests/leaderboard``, for clusters by resampling cluster ids with ``scipy.stats.bootstrap``).
* :func:`paired_wilcoxon` wraps ``scipy.stats.wilcoxon``; :func:`paired_wilcoxon_many` runs it on many
  columns of paired differences in one vectorised call.
* :func:`holm_adjust` is Holm's step-down adjustment of a family of p-values (Holm 1979).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from scipy import special
from scipy import stats as scipy_stats

try:  # a declared dependency; without it BLAS keeps its own thread count (same results)
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover
    ThreadpoolController = None

DEFAULT_RESAMPLES = 2000
METHODS = ("percentile", "bca")

__all__ = [
    "DEFAULT_RESAMPLES",
    "Bootstrapper",
    "bootstrap_ci",
    "bootstrap_ci_many",
    "cluster_bootstrap_ci",
    "cluster_sums",
    "holm_adjust",
    "paired_wilcoxon",
    "paired_wilcoxon_many",
    "stars",
]


def _as_clean_1d(values: Sequence[float] | np.ndarray, what: str = "values") -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D sequence of numbers, got shape {arr.shape}")
    return arr[np.isfinite(arr)]


_BLAS: list[Any] = []  # the ThreadpoolController, made on first use


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the block with BLAS on one thread.

    The bootstrap's matrix products are small (a few hundred by a few thousand): a second BLAS
    thread saves little even on an idle machine, and on a shared one its busy-waiting costs several
    times the CPU time and wall time of the product itself (measured 5x on this project's 2-core
    runner). Results are the same either way.
    """
    if ThreadpoolController is None:
        yield
        return
    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    with _BLAS[0].limit(limits=1, user_api="blas"):
        yield


def _check(confidence: float, n_resamples: int, method: str) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n_resamples < 10:
        raise ValueError(f"n_resamples must be at least 10, got {n_resamples}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


class Bootstrapper:
    """Bootstrap intervals of the mean for many samples, sharing one resampling plan per length.

    ``Bootstrapper(seed=0).ci(columns)`` returns ``(low, high)`` arrays, one entry per column.
    The count matrix for length ``n`` is drawn from ``numpy.random.default_rng((seed, n))``, so a
    sample's interval does not depend on which other samples were bootstrapped alongside it.
    """

    def __init__(
        self,
        confidence: float = 0.95,
        n_resamples: int = DEFAULT_RESAMPLES,
        seed: int = 0,
        method: str = "bca",
    ) -> None:
        _check(confidence, n_resamples, method)
        self.confidence = confidence
        self.n_resamples = int(n_resamples)
        self.seed = int(seed)
        self.method = method
        self._counts: dict[int, np.ndarray] = {}

    def counts(self, n: int) -> np.ndarray:
        """``(n_resamples, n)`` float32 matrix: how often each of ``n`` values is drawn per resample."""
        if n not in self._counts:
            rng = np.random.default_rng((self.seed, n))
            dtype = np.int32 if self.n_resamples * n < 2**31 else np.int64
            idx = rng.integers(0, n, size=(self.n_resamples, n), dtype=dtype)
            idx += (np.arange(self.n_resamples, dtype=idx.dtype) * n)[:, None]
            flat = np.bincount(idx.ravel(), minlength=self.n_resamples * n)
            # stored (R, n); used transposed, which BLAS reads without a copy
            self._counts[n] = flat.reshape(self.n_resamples, n).astype(np.float32)
        return self._counts[n]

    def resampled_deviations(
        self, matrix: np.ndarray, weights: np.ndarray | None = None
    ) -> np.ndarray:
        """Bootstrap means minus the sample mean, per column of a finite ``(n, k)`` matrix.

        Returned as ``(k, n_resamples)``. Centring first keeps float32 arithmetic exact to well
        below the spread of the data, whatever the data's offset. With ``weights`` (``(n, k)``,
        every entry at least 1) row ``i`` is a cluster: ``matrix[i]`` the sum of its ``weights[i]``
        values, and a resample's mean is ``sum(counts * matrix) / sum(counts * weights)``.
        """
        n = matrix.shape[0]
        counts_t = self.counts(n).T
        if weights is None:
            centred = (matrix - matrix.mean(axis=0)).astype(np.float32)
            return (centred.T @ counts_t) / np.float32(n)
        theta = matrix.sum(axis=0) / weights.sum(axis=0)
        centred = (matrix - theta * weights).astype(np.float32)
        if np.all(weights == weights[0]):  # equal cluster sizes: the denominator is constant
            den = (weights[0].astype(np.float32) * np.float32(n))[:, None]
        else:  # small integers: exact in float32
            den = weights.T.astype(np.float32) @ counts_t
        return (centred.T @ counts_t) / den

    def ci_matrix(
        self, matrix: np.ndarray, weights: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Intervals for each column of a finite ``(n, k)`` matrix; ``n == 1`` gives the value.

        With ``weights`` the rows are clusters (see :meth:`resampled_deviations`): ``matrix`` holds
        each cluster's sum and ``weights`` its number of values; the interval is that of the mean
        of all values, clusters resampled whole.
        """
        matrix = np.asarray(matrix, dtype=float)
        if weights is not None:
            weights = np.asarray(weights, dtype=float)
            if weights.shape != matrix.shape or not np.all(weights >= 1):
                raise ValueError(
                    "cluster weights must match the sums' shape and be at least 1 each, got "
                    f"{weights.shape} for sums of shape {matrix.shape}"
                )
        n, k = matrix.shape
        if weights is None:
            theta = matrix.mean(axis=0)
            cluster_means = matrix
        else:
            theta = matrix.sum(axis=0) / weights.sum(axis=0)
            cluster_means = matrix / weights
        if n < 2:
            return theta.copy(), theta.copy()
        low = np.empty(k)
        high = np.empty(k)
        alpha = (1.0 - self.confidence) / 2.0
        step = max(1, 2_000_000 // self.n_resamples)  # bound memory: ~8 MB of float32 per chunk
        for start in range(0, k, step):
            cols = slice(start, start + step)
            w = None if weights is None else weights[:, cols]
            dev = np.sort(self.resampled_deviations(matrix[:, cols], w), axis=1)
            if self.method == "percentile":
                p = np.full((dev.shape[0], 2), [alpha, 1.0 - alpha])
            else:
                p = self._bca_levels(matrix[:, cols], w, dev, alpha)
            low[cols] = theta[cols] + _row_quantiles(dev, p[:, 0])
            high[cols] = theta[cols] + _row_quantiles(dev, p[:, 1])
        constant = np.ptp(cluster_means, axis=0) == 0  # every resample gives the same mean
        low = np.where(constant, theta, low)
        high = np.where(constant, theta, high)
        return low, high

    def _bca_levels(
        self, matrix: np.ndarray, weights: np.ndarray | None, dev: np.ndarray, alpha: float
    ) -> np.ndarray:
        """BCa-adjusted quantile levels ``(k, 2)`` from sorted bootstrap deviations ``(k, R)``."""
        n = matrix.shape[0]
        r = dev.shape[1]
        # bias correction: share of resampled means below the observed mean (deviation < 0)
        below = np.count_nonzero(dev < 0, axis=1) + 0.5 * np.count_nonzero(dev == 0, axis=1)
        share = np.clip(below / r, 0.5 / r, 1.0 - 0.5 / r)
        z0 = special.ndtri(share)
        # acceleration from the jackknife of the mean: leave-one-out (cluster) means, closed form
        if weights is None:
            jack = (matrix.sum(axis=0) - matrix) / (n - 1)
        else:
            jack = (matrix.sum(axis=0) - matrix) / (weights.sum(axis=0) - weights)
        d = jack.mean(axis=0) - jack
        num = (d**3).sum(axis=0)
        den = 6.0 * np.power((d**2).sum(axis=0), 1.5)
        with np.errstate(divide="ignore", invalid="ignore"):
            accel = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        levels = []
        for tail in (alpha, 1.0 - alpha):
            z = special.ndtri(tail)
            adj = z0 + (z0 + z) / (1.0 - accel * (z0 + z))
            levels.append(np.clip(special.ndtr(adj), 0.0, 1.0))
        return np.stack(levels, axis=1)

    def ci(self, columns: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Intervals for samples of any lengths (NaN/inf dropped); empty samples give NaN."""
        clean = [_as_clean_1d(c, f"sample {i}") for i, c in enumerate(columns)]
        return self._ci_grouped(clean, None)

    def ci_clusters(
        self, clusters: Sequence[tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cluster-bootstrap intervals of the mean, one per sample of ``(sums, sizes)``.

        ``sums[i]`` is the sum of cluster ``i``'s values and ``sizes[i]`` (at least 1) how many
        there are (see :func:`cluster_sums`). Clusters are drawn with replacement, each bringing
        all its values; the interval is for the mean over all values. Samples without clusters
        give NaN. With every size 1 this is :meth:`ci` on the sums, number for number.
        """
        sums, sizes = [], []
        for i, (s, w) in enumerate(clusters):
            s = np.asarray(s, dtype=float)
            w = np.asarray(w, dtype=float)
            if s.ndim != 1 or s.shape != w.shape:
                raise ValueError(
                    f"cluster sample {i}: sums and sizes must be 1-D and equally long, "
                    f"got {s.shape} and {w.shape}"
                )
            if not (np.all(np.isfinite(s)) and np.all(w >= 1)):
                raise ValueError(
                    f"cluster sample {i}: sums must be finite and sizes at least 1 "
                    "(leave out clusters without values)"
                )
            sums.append(s)
            sizes.append(w)
        return self._ci_grouped(sums, sizes)

    def _ci_grouped(
        self, samples: list[np.ndarray], sizes: list[np.ndarray] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Intervals of clean 1-D samples, grouped by length so each group is one matrix."""
        k = len(samples)
        low = np.full(k, np.nan)
        high = np.full(k, np.nan)
        by_len: dict[int, list[int]] = {}
        for i, c in enumerate(samples):
            if c.size:
                by_len.setdefault(c.size, []).append(i)
        with single_threaded_blas():
            for n, where in by_len.items():
                matrix = np.stack([samples[i] for i in where], axis=1).reshape(n, -1)
                weights = None
                if sizes is not None:
                    weights = np.stack([sizes[i] for i in where], axis=1).reshape(n, -1)
                    if np.all(weights == 1.0):  # one value per cluster: the plain bootstrap
                        weights = None
                lo, hi = self.ci_matrix(matrix, weights)
                low[where] = lo
                high[where] = hi
        return low, high


def _row_quantiles(srt: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Quantile ``p[j]`` of sorted row ``j`` (linear interpolation, as ``np.quantile``)."""
    r = srt.shape[1]
    pos = p * (r - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, r - 1)
    frac = pos - lo
    rows = np.arange(srt.shape[0])
    return srt[rows, lo] * (1 - frac) + srt[rows, hi] * frac


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    method: str = "bca",
) -> tuple[float, float]:
    """Bootstrap confidence interval of the mean of ``values`` (NaN/inf ignored).

    ``method`` is ``"bca"`` (default, as ``scipy.stats.bootstrap``) or ``"percentile"``. An empty
    sample gives ``(nan, nan)``; one value or a constant sample gives ``(value, value)``.

    >>> lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0, 5.0], seed=0)
    >>> 1.0 < lo < 3.0 < hi < 5.0
    True
    """
    low, high = Bootstrapper(confidence, n_resamples, seed, method).ci([np.asarray(values)])
    return float(low[0]), float(high[0])


def bootstrap_ci_many(
    samples: Sequence[Sequence[float] | np.ndarray],
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    method: str = "bca",
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bootstrap_ci` for many samples at once; returns arrays ``(low, high)``."""
    return Bootstrapper(confidence, n_resamples, seed, method).ci([np.asarray(s) for s in samples])


def cluster_sums(
    values: Sequence[float] | np.ndarray, clusters: Sequence[object] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster (in order of first appearance): the sum of its finite values and their number.

    Clusters whose values are all NaN/inf are left out. ``clusters`` labels each value (for the
    leaderboard: the item id, so one cluster holds an utterance's values over all seeds).

    >>> cluster_sums([1.0, 2.0, 3.0, float("nan")], ["b", "a", "b", "c"])
    (array([4., 2.]), array([2., 1.]))
    """
    x = np.asarray(values, dtype=float)
    labels = np.asarray(clusters)
    if x.ndim != 1 or labels.shape != x.shape:
        raise ValueError(
            f"values and cluster labels must be 1-D and equally long, got {x.shape} and "
            f"{labels.shape}"
        )
    keep = np.isfinite(x)
    if not keep.any():
        return np.empty(0), np.empty(0)
    _, first, inverse = np.unique(labels[keep], return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # unique labels in order of first appearance
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    where = position[inverse.ravel()]
    sums = np.bincount(where, weights=x[keep], minlength=order.size)
    sizes = np.bincount(where, minlength=order.size).astype(float)
    return sums, sizes


def cluster_bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    clusters: Sequence[object] | np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    method: str = "bca",
) -> tuple[float, float]:
    """Cluster-bootstrap interval of the mean of ``values`` (NaN/inf ignored).

    Each resample draws as many clusters as there are, with replacement, and takes every value of
    each drawn cluster; its statistic is the mean of those values. With one value per cluster this
    is :func:`bootstrap_ci`, number for number.

    >>> values = [1.0, 1.1, 2.0, 2.1, 3.0, 3.1]
    >>> lo, hi = cluster_bootstrap_ci(values, ["a", "a", "b", "b", "c", "c"])
    >>> row_lo, row_hi = bootstrap_ci(values)
    >>> hi - lo > row_hi - row_lo  # a cluster's two values are not independent evidence
    True
    """
    low, high = Bootstrapper(confidence, n_resamples, seed, method).ci_clusters(
        [cluster_sums(values, clusters)]
    )
    return float(low[0]), float(high[0])


def holm_adjust(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values for one family of tests (NaN entries are not tests).

    With the ``m`` finite p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted value of the
    ``i``-th is ``max_{j <= i} min(1, (m - j + 1) * p_(j))``; rejecting where it is below ``alpha``
    keeps the family-wise error rate at ``alpha`` under any dependence between the tests. NaN
    stays NaN and does not count in ``m``.

    >>> holm_adjust([0.01, 0.04, 0.03, float("nan")]).round(3).tolist()
    [0.03, 0.06, 0.06, nan]
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"p-values: expected a 1-D sequence, got shape {p.shape}")
    finite = np.isfinite(p)
    if np.any((p[finite] < 0.0) | (p[finite] > 1.0)):
        raise ValueError("p-values must lie in [0, 1]")
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(finite)
    m = tested.size
    if m == 0:
        return out
    order = tested[np.argsort(p[tested], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def paired_wilcoxon(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value for paired samples ``a`` and ``b``.

    Pairs where either side is NaN are dropped. Fewer than two pairs, or no non-zero difference,
    give NaN (there is nothing to test). Zero differences are dropped (``zero_method="wilcox"``).
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"paired samples must be 1-D and equally long, got {x.shape} and {y.shape}"
        )
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    return float(paired_wilcoxon_many([d])[0])


def paired_wilcoxon_many(differences: Sequence[np.ndarray]) -> np.ndarray:
    """Two-sided Wilcoxon p-values for many samples of paired differences (NaN dropped).

    Samples with the same number of differences are tested in one vectorised call of
    ``scipy.stats.wilcoxon``; each result equals a separate call on that sample. (scipy chooses
    the exact null distribution, a permutation test or the normal approximation from whether the
    *whole batch* has zeros or tied ``|d|``, so samples with and without are batched apart.)
    """
    p = np.full(len(differences), np.nan)
    groups: dict[tuple[int, bool], list[int]] = {}
    cleaned: list[np.ndarray] = []
    for i, d in enumerate(differences):
        arr = np.asarray(d, dtype=float)
        arr = arr[np.isfinite(arr)]
        cleaned.append(arr)
        nonzero = np.abs(arr[arr != 0.0])
        if arr.size >= 2 and nonzero.size:
            zeros_or_ties = nonzero.size < arr.size or np.unique(nonzero).size < nonzero.size
            groups.setdefault((arr.size, bool(zeros_or_ties)), []).append(i)
    for where in groups.values():
        matrix = np.stack([cleaned[i] for i in where], axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            res = scipy_stats.wilcoxon(matrix, axis=1, zero_method="wilcox")
        p[where] = np.atleast_1d(res.pvalue)
    return p


def stars(p: float | None) -> str:
    """Significance stars: ``***`` p < 0.001, ``**`` p < 0.01, ``*`` p < 0.05, else ``""``."""
    if p is None:
        return ""
    try:
        pf = float(p)
    except (TypeError, ValueError):
        return ""
    if math.isnan(pf):
        return ""
    if pf < 0.001:
        return "***"
    if pf < 0.01:
        return "**"
    if pf < 0.05:
        return "*"
    return ""
