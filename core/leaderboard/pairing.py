"""Stage *pairing*: each system's per-item values pooled over seeds and paired with its anchor's.

The statistics (:mod:`.summary`) need, per system x metric output, every item's values over the
system's seeds and the paired differences to the anchor of the same backbone: run seed ``s``
against anchor seed ``s`` on the same item, or the anchor's per-item mean over its seeds where it
has no seed ``s``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .load import LoadedResults

__all__ = ["AnchorScores", "Pairing", "Pooled"]


@dataclass
class AnchorScores:
    """An anchor's per-utterance values for one metric, dense over item codes.

    ``column`` maps an output to its column; the last column is all NaN (for outputs the anchor
    lacks). ``by_seed[seed]`` is ``(n_codes, n_outputs + 1)``: that seed's values where its run has
    the output, else the mean over the anchor's seeds; ``mean`` is used for other seeds.
    """

    column: dict[str, int]
    by_seed: dict[Any, np.ndarray]
    mean: np.ndarray


@dataclass
class Pooled:
    """A system's per-utterance values of one output and its paired differences, per item.

    ``sums[i]``/``sizes[i]``: the sum and number of item ``i``'s finite values over all the
    system's runs (seeds); ``diff_sums``/``diff_sizes`` the same for the paired differences to the
    anchor. Items are in order of first appearance (run by run, in each run's row order); items
    without a finite value are left out.
    """

    sums: np.ndarray
    sizes: np.ndarray
    diff_sums: np.ndarray
    diff_sizes: np.ndarray
    n_not_applicable: int
    n_failed: int


def _per_item(codes: np.ndarray, matrix: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per column of ``matrix`` (rows labelled by item ``codes``): ``(sums, sizes)`` per item.

    Items are in order of first appearance in ``codes``; in each column, items with no finite
    value are dropped. With one row per item the sums are the values themselves, in row order.
    """
    k = matrix.shape[1]
    if not codes.size:
        return [(np.empty(0), np.empty(0)) for _ in range(k)]
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    m = order.size
    finite = np.isfinite(matrix)
    flat = (position[inverse.ravel()][:, None] + m * np.arange(k))[finite]
    sums = np.bincount(flat, weights=matrix[finite], minlength=m * k).reshape(k, m)
    sizes = np.bincount(flat, minlength=m * k).reshape(k, m).astype(float)
    out = []
    for j in range(k):
        keep = sizes[j] > 0
        out.append((sums[j][keep], sizes[j][keep]))
    return out


class Pairing:
    """Pairs a system's per-utterance values with its anchor's, by item id and seed.

    Item ids are mapped to integer codes once (runs with the same item list share one code array);
    an anchor's runs become dense ``(n_codes, n_outputs)`` matrices per seed, so pairing a system
    run with its anchor is one fancy-indexing step for all outputs of a metric. When the anchor
    has no run with the system run's seed (or that run lacks the output), the anchor's per-item
    mean over its seeds is used. A duplicated item id in a run: its first row counts.
    """

    def __init__(self, loaded: LoadedResults) -> None:
        self.scores = loaded.scores
        codes: dict[str, int] = {}
        by_items: dict[tuple[str, ...], np.ndarray] = {}
        self.codes_of: dict[tuple[str, str], np.ndarray] = {}
        for key, sc in loaded.scores.items():
            items = tuple(sc.items)
            arr = by_items.get(items)
            if arr is None:
                arr = np.array([codes.setdefault(i, len(codes)) for i in items], dtype=np.int64)
                by_items[items] = arr
            self.codes_of[key] = arr
        self.n_codes = len(codes)
        self._anchor: dict[tuple[str, str], AnchorScores | None] = {}

    def _dense(self, run_id: str, metric: str, n_cols: int, cols: list[int]) -> np.ndarray:
        """One run's values as ``(n_codes, n_cols)``, its outputs at ``cols``, NaN elsewhere."""
        sc = self.scores[(run_id, metric)]
        codes = self.codes_of[(run_id, metric)]
        out = np.full((self.n_codes, n_cols), np.nan)
        if codes.size:
            run = np.column_stack(list(sc.values.values())) if sc.values else None
            if run is not None:
                block = np.full((self.n_codes, len(cols)), np.nan)
                block[codes[::-1]] = run[::-1]  # first occurrence of a duplicated item wins
                out[:, cols] = block
        return out

    def anchor(
        self, anchor_system: str, anchor_runs: list[tuple[str, Any]], metric: str
    ) -> AnchorScores | None:
        key = (anchor_system, metric)
        if key not in self._anchor:
            self._anchor[key] = self._build_anchor(anchor_runs, metric)
        return self._anchor[key]

    def _build_anchor(self, anchor_runs: list[tuple[str, Any]], metric: str) -> AnchorScores | None:
        runs = [(rid, seed) for rid, seed in anchor_runs if (rid, metric) in self.scores]
        column: dict[str, int] = {}
        for rid, _ in runs:
            for name in self.scores[(rid, metric)].values:
                column.setdefault(name, len(column))
        if not column:
            return None
        k = len(column)
        dense: dict[Any, np.ndarray] = {}
        has: dict[Any, np.ndarray] = {}
        for rid, seed in runs:
            cols = [column[name] for name in self.scores[(rid, metric)].values]
            run = self._dense(rid, metric, k, cols)
            if seed not in dense:
                dense[seed] = np.full((self.n_codes, k), np.nan)
                has[seed] = np.zeros(k, dtype=bool)
            dense[seed][:, cols] = run[:, cols]  # a later run of the same seed replaces it
            has[seed][cols] = True
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(np.stack(list(dense.values())), axis=0)
        nan_col = np.full((self.n_codes, 1), np.nan)
        by_seed = {
            seed: np.hstack([np.where(has[seed], arr, mean), nan_col])
            for seed, arr in dense.items()
        }
        return AnchorScores(column, by_seed, np.hstack([mean, nan_col]))

    def pooled(
        self,
        runs: list[tuple[str, Any]],
        anchor_system: str | None,
        anchor_runs: list[tuple[str, Any]],
        metric: str,
        outputs: list[str],
    ) -> list[Pooled]:
        """Per output of ``metric``: a system's values and paired differences per item, item errors.

        Run ``r`` (seed ``s``) of the system is paired item by item with the anchor's seed-``s``
        run, or with the anchor's per-item mean over its seeds when it has no seed ``s`` (so an
        anchor with one seed serves every seed of the system).
        """
        k = len(outputs)
        ref = (
            self.anchor(anchor_system, anchor_runs, metric)
            if anchor_runs and anchor_system is not None
            else None
        )
        anchor_cols = [ref.column.get(o, len(ref.column)) for o in outputs] if ref else []
        values, diffs, codes = [], [], []
        n_na = np.zeros(k, dtype=np.int64)
        n_failed = np.zeros(k, dtype=np.int64)
        for rid, seed in runs:
            sc = self.scores.get((rid, metric))
            if sc is None:
                continue
            present = np.array([o in sc.values for o in outputs])
            if not present.any():
                continue
            n = len(sc.items)
            v = np.column_stack(
                [sc.values[o] if o in sc.values else np.full(n, np.nan) for o in outputs]
            )
            values.append(v)
            codes.append(self.codes_of[(rid, metric)])
            n_na += present * sc.n_not_applicable
            n_failed += present * sc.n_failed
            if ref is not None:
                dense = ref.by_seed.get(seed, ref.mean)
                a = dense[codes[-1]][:, anchor_cols]
                diffs.append(v - a)
        all_codes = np.concatenate(codes) if codes else np.empty(0, dtype=np.int64)
        all_v = np.concatenate(values) if values else np.empty((0, k))
        all_d = np.concatenate(diffs) if diffs else np.full((all_codes.size, k), np.nan)
        per_value = _per_item(all_codes, all_v)
        per_diff = _per_item(all_codes, all_d)
        return [
            Pooled(*per_value[j], *per_diff[j], int(n_na[j]), int(n_failed[j])) for j in range(k)
        ]
