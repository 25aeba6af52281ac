"""Per-item score rows (``scores/<metric>.jsonl``) as one array per metric output.

The rows are :class:`ttsadapt.results.ScoreRow` objects, read here as arrays (a suite has hundreds
of thousands). Rows with an ``error`` count as NaN; one that is not applicable (the metric cannot
score the item: its ``not_applicable`` field, or in version 1 rows an error beginning with ``not
applicable``) is counted apart from failed items.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import compress
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from ..results import NOT_APPLICABLE_PREFIX, is_not_applicable
from .jsonio import read_score_rows

__all__ = ["NOT_APPLICABLE_PREFIX", "UtteranceScores", "load_scores", "number"]


@dataclass
class UtteranceScores:
    """One run x metric's per-utterance rows: values per output (NaN where the item had an error)."""

    items: list[str]
    values: dict[str, np.ndarray]
    n_not_applicable: int = 0
    n_failed: int = 0


def load_scores(path: Path | str, outputs: list[str]) -> UtteranceScores:
    """One score file's values for ``outputs`` (in that order); odd rows take the careful path."""
    rows = read_score_rows(path)
    try:
        return _scores_from_rows(rows, outputs)
    except (AttributeError, KeyError, TypeError, ValueError):  # odd rows: the careful path
        return _scores_from_odd_rows(rows, outputs)


def _count_errors(rows: list[Any], errors: list[Any]) -> tuple[int, int]:
    """(not applicable, failed) among the rows with an ``error`` (see
    :func:`ttsadapt.results.is_not_applicable`: the row's ``not_applicable``, else the prefix)."""
    n_na = n_failed = 0
    for row, err in compress(zip(rows, errors), errors):  # the rows with an error only
        flag = row.get("not_applicable") if isinstance(row, dict) else None
        if is_not_applicable(err, flag):
            n_na += 1
        else:
            n_failed += 1
    return n_na, n_failed


def _scores_from_rows(rows: list[dict[str, Any]], outputs: list[str]) -> UtteranceScores:
    """Per-utterance rows to one array per output, with C-level getters where rows are regular.

    Rows with an error count as NaN for every output. Odd rows (not an object, a value that is not
    a number) raise here and take :func:`_scores_from_odd_rows`.
    """
    try:  # C-level getters when every row has the keys the runner writes
        items = list(map(itemgetter("item"), rows))
        errors = list(map(itemgetter("error"), rows))
        values = list(map(itemgetter("values"), rows))
    except KeyError:
        items = [r.get("item") for r in rows]
        errors = [r.get("error") for r in rows]
        values = [r.get("values") for r in rows]
    if set(map(type, items)) - {str}:
        items = [str(i) for i in items]
    nan_row = dict.fromkeys(outputs, math.nan)
    if any(errors):
        ok = [nan_row if e else (v or nan_row) for v, e in zip(values, errors)]
    else:
        ok = [v or nan_row for v in values]
    try:  # every row names every output: one C-level getter per row
        flat = list(map(itemgetter(*outputs), ok)) if outputs else []
    except KeyError:  # some output missing from some row: NaN there
        flat = [tuple(v.get(name, math.nan) for name in outputs) for v in ok]
    # None -> NaN; a string or a nested value raises here and takes the careful path
    matrix = np.array(flat, dtype=float).reshape(len(rows), len(outputs)).T.copy()
    return UtteranceScores(items, dict(zip(outputs, matrix)), *_count_errors(rows, errors))


def _scores_from_odd_rows(rows: list[Any], outputs: list[str]) -> UtteranceScores:
    """Any rows: a row that is not an object counts as a failed item; odd values become NaN."""
    rows = [
        r if isinstance(r, dict) else {"item": None, "error": "score row is not a JSON object"}
        for r in rows
    ]
    items = [str(r.get("item")) for r in rows]
    errors = [r.get("error") for r in rows]
    ok = [
        {} if e or not isinstance(r.get("values"), dict) else r["values"]
        for r, e in zip(rows, errors)
    ]
    values = {name: np.array([number(v.get(name)) for v in ok], dtype=float) for name in outputs}
    return UtteranceScores(items, values, *_count_errors(rows, errors))


def number(value: Any) -> float:
    """``value`` as a float; NaN where it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
