"""Statistics for the leaderboard: bootstrap confidence intervals, paired Wilcoxon tests, stars.

Everything is vectorised numpy so a leaderboard over thousands of records stays fast:

* A bootstrap resample of ``n`` values is a column of *counts* (how often each value was drawn), so
  the means of ``R`` resamples are one matrix product ``values @ counts / n`` (float32, centred). :class:`Bootstrapper`
  caches the count matrix per ``n`` and applies it to every column of that length at once; the
  single-sample :func:`bootstrap_ci` uses the same construction, so both give identical intervals.
* Intervals are percentile or BCa (bias-corrected and accelerated, Efron 1987; the acceleration
  comes from the jackknife of the mean, which has a closed form). They agree with
  ``scipy.stats.bootstrap`` to Monte-Carlo precision (checked in ``tests/leaderboard``).
* :func:`paired_wilcoxon` wraps ``scipy.stats.wilcoxon``; :func:`paired_wilcoxon_many` runs it on many
  columns of paired differences in one vectorised call.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

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
    "paired_wilcoxon",
    "paired_wilcoxon_many",
    "stars",
]


def _as_clean_1d(values: Sequence[float] | np.ndarray, what: str = "values") -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D sequence of numbers, got shape {arr.shape}")
    return arr[np.isfinite(arr)]


_BLAS: list[object] = []  # the ThreadpoolController, made on first use


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
            idx += (np.arange(self.n_resamples, dtype=dtype) * n)[:, None]
            flat = np.bincount(idx.ravel(), minlength=self.n_resamples * n)
            # stored (R, n); used transposed, which BLAS reads without a copy
            self._counts[n] = flat.reshape(self.n_resamples, n).astype(np.float32)
        return self._counts[n]

    def resampled_deviations(self, matrix: np.ndarray) -> np.ndarray:
        """Bootstrap means minus the sample mean, per column of a finite ``(n, k)`` matrix.

        Returned as ``(k, n_resamples)``. Centring first keeps float32 arithmetic exact to well
        below the spread of the data, whatever the data's offset.
        """
        n = matrix.shape[0]
        centred = (matrix - matrix.mean(axis=0)).astype(np.float32)
        return (centred.T @ self.counts(n).T) / np.float32(n)

    def ci_matrix(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Intervals for each column of a finite ``(n, k)`` matrix; ``n == 1`` gives the value."""
        matrix = np.asarray(matrix, dtype=float)
        n, k = matrix.shape
        theta = matrix.mean(axis=0)
        if n < 2:
            return theta.copy(), theta.copy()
        low = np.empty(k)
        high = np.empty(k)
        alpha = (1.0 - self.confidence) / 2.0
        step = max(1, 2_000_000 // self.n_resamples)  # bound memory: ~8 MB of float32 per chunk
        for start in range(0, k, step):
            cols = slice(start, start + step)
            dev = np.sort(self.resampled_deviations(matrix[:, cols]), axis=1)
            if self.method == "percentile":
                p = np.full((dev.shape[0], 2), [alpha, 1.0 - alpha])
            else:
                p = self._bca_levels(matrix[:, cols], dev, alpha)
            low[cols] = theta[cols] + _row_quantiles(dev, p[:, 0])
            high[cols] = theta[cols] + _row_quantiles(dev, p[:, 1])
        constant = np.ptp(matrix, axis=0) == 0
        low = np.where(constant, theta, low)
        high = np.where(constant, theta, high)
        return low, high

    def _bca_levels(self, matrix: np.ndarray, dev: np.ndarray, alpha: float) -> np.ndarray:
        """BCa-adjusted quantile levels ``(k, 2)`` from sorted bootstrap deviations ``(k, R)``."""
        n = matrix.shape[0]
        r = dev.shape[1]
        # bias correction: share of resampled means below the observed mean (deviation < 0)
        below = np.count_nonzero(dev < 0, axis=1) + 0.5 * np.count_nonzero(dev == 0, axis=1)
        share = np.clip(below / r, 0.5 / r, 1.0 - 0.5 / r)
        z0 = special.ndtri(share)
        # acceleration from the jackknife of the mean: leave-one-out means in closed form
        jack = (matrix.sum(axis=0) - matrix) / (n - 1)
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
        k = len(columns)
        low = np.full(k, np.nan)
        high = np.full(k, np.nan)
        clean = [_as_clean_1d(c, f"sample {i}") for i, c in enumerate(columns)]
        by_len: dict[int, list[int]] = {}
        for i, c in enumerate(clean):
            if c.size:
                by_len.setdefault(c.size, []).append(i)
        with single_threaded_blas():
            for n, where in by_len.items():
                lo, hi = self.ci_matrix(np.stack([clean[i] for i in where], axis=1).reshape(n, -1))
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
    ``scipy.stats.wilcoxon``; each result equals a separate call on that sample.
    """
    p = np.full(len(differences), np.nan)
    groups: dict[int, list[int]] = {}
    cleaned: list[np.ndarray] = []
    for i, d in enumerate(differences):
        arr = np.asarray(d, dtype=float)
        arr = arr[np.isfinite(arr)]
        cleaned.append(arr)
        if arr.size >= 2 and np.any(arr != 0.0):
            groups.setdefault(arr.size, []).append(i)
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
