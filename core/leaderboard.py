"""The leaderboard: built from a suite's records only (see :mod:`ttsadapt.records` for the format).

``build_leaderboard(results_dir, suite)`` writes ``results_dir/suite/leaderboard.{md,csv,html}``:

* one row per *system* = backbone x method x method params x data recipe (seeds pooled);
* per metric output: the mean over all utterance x seed values with a 95 % BCa *cluster* bootstrap
  interval (utterances are resampled, each with all its seeds' values, so seeds of one utterance
  are not counted as independent evidence), the per-seed means and intervals from the records, the
  delta to the zero-shot anchor of the same backbone (mean of paired differences: system seed ``s``
  paired with anchor seed ``s`` on the same item; where the anchor has no seed ``s``, its per-item
  mean over its seeds, so a one-seed anchor serves every seed) with its cluster bootstrap interval,
  a two-sided Wilcoxon signed-rank test on the per-item means of those differences (one pair per
  utterance), its p-value raw and Holm-adjusted over every comparison of the leaderboard (all
  systems x metric outputs against their anchor: one family), stars from the adjusted p-value, and
  the rank among all systems;
* trainable-parameter share, adapter size, the selected checkpoint's validation loss;
* failed and unfinished runs, and items that were "not applicable" or failed.

The CSV is *tidy long*: one row per system x metric x output x scope, where scope is ``pooled``
(the leaderboard statistics) or ``seed`` (one row per seed, numbers from that run's record).
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .components import direction_arrow, has_direction
from .errors import ConfigError, TTSAdaptError
from .records import DONE_MARKER, atomic_folder, atomic_write_text, iter_jsonl_objects, read_jsonl
from .stats import DEFAULT_RESAMPLES, Bootstrapper, holm_adjust, paired_wilcoxon_many, stars

try:  # a declared dependency; the standard library gives the same results, only slower
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None

__all__ = [
    "FailedRun",
    "LoadedResults",
    "Summary",
    "UtteranceScores",
    "build_leaderboard",
    "check_metric_versions",
    "list_suites",
    "load_results",
    "summarise",
]

NOT_APPLICABLE_PREFIX = "not applicable"
SELECT_CHOICES = ("val_loss", "dev_metric", "dev_score")  # dev_score: alias of dev_metric
_SELECT_FIELD = {"val_loss": "val_loss", "dev_metric": "dev_score", "dev_score": "dev_score"}


# --------------------------------------------------------------------------- loading


@dataclass
class UtteranceScores:
    """One run x metric's per-utterance rows: values per output (NaN where the item had an error)."""

    items: list[str]
    values: dict[str, np.ndarray]
    n_not_applicable: int = 0
    n_failed: int = 0


@dataclass
class FailedRun:
    run_id: str
    error: str  # first line of the error
    status: str = "failed"  # "failed" | "unfinished" | "bad record"
    metric: str | None = None


@dataclass
class LoadedResults:
    """Everything read from ``<results>/<suite>/runs``: finished runs only, failures listed."""

    suite: str
    suite_dir: Path
    records: pd.DataFrame  # one row per run x metric x output
    scores: dict[tuple[str, str], UtteranceScores]  # (run_id, metric) -> per-utterance values
    failed_runs: list[FailedRun] = field(default_factory=list)
    unfinished_runs: list[str] = field(default_factory=list)
    failed_records: list[FailedRun] = field(default_factory=list)
    checkpoints: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # run_id -> checkpoints.json
    # (run_id, metric) -> the record's "human" block (metrics made from listening tests)
    human: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def run_ids(self) -> list[str]:
        return sorted(self.records["run_id"].unique()) if len(self.records) else []


def list_suites(results_dir: Path) -> list[str]:
    """Names of the suites under ``results_dir`` (folders holding a ``runs/`` folder), sorted."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return []
    return sorted(p.name for p in results_dir.iterdir() if (p / "runs").is_dir())


def _first_line(text: str) -> str:
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return "(no error message)"


def _parse_json(data: bytes) -> Any:
    """Parse JSON bytes: orjson when installed (several times faster), else the standard library.

    orjson refuses what Python's ``json`` writes for non-finite floats (``NaN``, ``Infinity``) and
    integers beyond 64 bits, so any orjson failure is retried with ``json``; errors therefore come
    from ``json`` (a :class:`json.JSONDecodeError` or :class:`UnicodeDecodeError`) either way.
    """
    if _orjson is not None:
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError:
            pass
    return json.loads(data)


def _read_json(path: Path | str) -> Any:
    with open(path, "rb") as fh:
        return _parse_json(fh.read())


def _read_score_rows(path: Path | str) -> list[dict[str, Any]]:
    with open(path, "rb") as fh:
        data = fh.read()
    body = data.strip()
    if _orjson is not None:
        try:  # fast path: the whole file as one JSON array, one parse
            return _orjson.loads(b"[" + body.replace(b"\n", b",") + b"]")
        except _orjson.JSONDecodeError:
            pass
    lines = [ln for ln in data.decode("utf-8").split("\n") if ln.strip()]
    try:
        return json.loads("[" + ",".join(lines) + "]")
    except json.JSONDecodeError:
        return read_jsonl(Path(path))  # tolerates a torn last line, names nothing else


_REQUIRED = ("run_id", "metric", "metric_version", "outputs")


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _headline(record: dict[str, Any]) -> str:
    outputs = record["outputs"]
    head = record.get("headline")
    if isinstance(head, str) and head in outputs:
        return head
    for name, out in outputs.items():
        if isinstance(out, dict) and out.get("headline") is True:
            return name
    if record["metric"] in outputs:
        return record["metric"]
    return next(iter(outputs))


def _run_failure(run_dir: Path, names: set[str] | None = None) -> str | None:
    """The first error line of a failed run, or None when it did not fail.

    ``names`` are the entries of ``run_dir`` when the caller has listed it already.
    """
    if names is None:
        names = set(os.listdir(run_dir))
    if "error.txt" in names:
        err = run_dir / "error.txt"
        if err.is_file():
            return _first_line(err.read_text(encoding="utf-8", errors="replace"))
    if "run.json" in names:
        try:
            info = _read_json(run_dir / "run.json")
        except (OSError, ValueError):  # JSONDecodeError, UnicodeDecodeError
            return None
        if isinstance(info, dict) and info.get("status") == "failed":
            return _first_line(info.get("error") or "failed (run.json gives no error)")
    return None


def _json_files(folder: Path | str) -> list[str]:
    """Sorted names of the ``*.json`` files in ``folder`` ([] when it is missing)."""
    try:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if e.name.endswith(".json") and e.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return []


def load_results(suite_dir: Path, headlines: dict[str, str] | None = None) -> LoadedResults:
    """Read every finished run (``DONE`` marker present) of one suite folder.

    Failed runs (``error.txt`` or ``run.json`` status ``failed``) and unfinished runs (no ``DONE``)
    are listed, not loaded. A record that cannot be read, misses a field or has status other than
    ``ok`` is listed in ``failed_records`` with the reason; the other records still load.
    ``headlines`` maps a metric name to its headline output when records do not say (see
    :func:`build_leaderboard`).
    """
    suite_dir = Path(suite_dir)
    runs_dir = suite_dir / "runs"
    if not runs_dir.is_dir():
        raise TTSAdaptError(
            f"{runs_dir}: no runs folder; expected the results of a suite run "
            f"(<results>/<suite>/runs/<run_id>/...)"
        )
    headlines = headlines or {}
    loaded = LoadedResults(
        suite=suite_dir.name, suite_dir=suite_dir, records=pd.DataFrame(), scores={}
    )
    rows: list[dict[str, Any]] = []
    with os.scandir(runs_dir) as it:
        run_names = sorted(e.name for e in it if e.is_dir())
    with _gc_paused():
        for run_id in run_names:
            _load_run(runs_dir / run_id, loaded, headlines, rows)
    loaded.records = pd.DataFrame(rows)
    return loaded


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: parsing allocates ~10^6 short-lived acyclic objects
    (freed by reference counting) that would otherwise trigger repeated full collections."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load_run(
    run_dir: Path, loaded: LoadedResults, headlines: dict[str, str], rows: list[dict[str, Any]]
) -> None:
    """Read one run folder into ``loaded`` (failures, checkpoints, scores) and ``rows``."""
    run_id = run_dir.name
    folder = os.fspath(run_dir)  # plain strings from here: pathlib costs ~10 us per join
    names = set(os.listdir(run_dir))
    failure = _run_failure(run_dir, names)
    if failure is not None:
        loaded.failed_runs.append(FailedRun(run_id, failure))
        return
    if DONE_MARKER not in names:
        loaded.unfinished_runs.append(run_id)
        return
    if "checkpoints.json" in names:
        ck = os.path.join(folder, "checkpoints.json")
        try:
            loaded.checkpoints[run_id] = _normalise_checkpoints(_read_json(ck))
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            loaded.failed_records.append(
                FailedRun(run_id, f"{ck}: unreadable ({exc})", "bad record")
            )
    if "records" not in names:
        return
    rec_dir = os.path.join(folder, "records")
    score_names = set(os.listdir(os.path.join(folder, "scores"))) if "scores" in names else set()
    for rec_name in _json_files(rec_dir):
        rows.extend(
            _load_record(
                os.path.join(rec_dir, rec_name), run_id, folder, loaded, headlines, score_names
            )
        )


def _load_record(
    rec_path: str,
    run_id: str,
    run_dir: str,
    loaded: LoadedResults,
    headlines: dict[str, str],
    score_names: set[str] | None = None,
) -> list[dict[str, Any]]:
    metric_name = os.path.splitext(os.path.basename(rec_path))[0]
    try:
        record = _read_json(rec_path)
    except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError
        loaded.failed_records.append(
            FailedRun(run_id, f"{rec_path}: not valid JSON ({exc})", "bad record", metric_name)
        )
        return []
    if not isinstance(record, dict):
        loaded.failed_records.append(
            FailedRun(
                run_id,
                f"{rec_path}: expected a JSON object, got {type(record).__name__}",
                "bad record",
                metric_name,
            )
        )
        return []
    missing = [k for k in _REQUIRED if k not in record]
    if missing or not isinstance(record.get("outputs"), dict):
        loaded.failed_records.append(
            FailedRun(
                run_id,
                f"{rec_path}: missing field(s) {', '.join(missing) or 'outputs (a mapping)'}",
                "bad record",
                metric_name,
            )
        )
        return []
    metric = record["metric"]
    if record.get("status", "ok") != "ok":
        loaded.failed_records.append(
            FailedRun(
                run_id,
                _first_line(record.get("error") or f"status {record.get('status')}"),
                "failed",
                metric,
            )
        )
        return []
    if not record["outputs"]:
        loaded.failed_records.append(
            FailedRun(run_id, f"{rec_path}: no outputs", "bad record", metric)
        )
        return []
    if isinstance(record.get("human"), dict):
        loaded.human[(run_id, metric)] = record["human"]
    head = headlines.get(metric) if headlines.get(metric) in record["outputs"] else None
    head = head or _headline(record)
    order = [head] + [o for o in record["outputs"] if o != head]
    scores_path = os.path.join(run_dir, "scores", f"{metric}.jsonl")
    if (
        (f"{metric}.jsonl" in score_names)
        if score_names is not None
        else os.path.isfile(scores_path)
    ):
        loaded.scores[(run_id, metric)] = _load_scores(scores_path, order)
    identity = [
        record.get("backbone"),
        record.get("backbone_version"),
        record.get("backbone_params"),
        record.get("method"),
        record.get("method_version"),
        record.get("method_params"),
        record.get("data_recipe"),
    ]
    settings = record.get("synthesis_settings") or {}
    if settings:  # a [synthesis] setting is part of the system (records without one: unchanged)
        identity.append({"synthesis": settings})
    system = _canon(identity)
    base = {
        "synthesis": _params_text(settings),
        "run_id": record.get("run_id", run_id),
        "system": system,
        "backbone": record.get("backbone"),
        "backbone_params": _canon(record.get("backbone_params") or {}),
        "method": record.get("method"),
        "method_params": record.get("method_params") or {},
        "data_recipe": record.get("data_recipe"),
        "is_anchor": bool(record.get("is_anchor", False)),
        "seed": record.get("seed"),
        "suite_version": record.get("suite_version"),
        "metric": metric,
        "metric_version": str(record["metric_version"]),
        "n_items": record.get("n_items"),
        "n_errors": record.get("n_errors"),
        "trainable_params": record.get("trainable_params"),
        "total_params": record.get("total_params"),
        "adapter_bytes": record.get("adapter_bytes"),
    }
    out_rows = []
    for index, name in enumerate(order):
        out = record["outputs"][name] or {}
        rng = out.get("range") or [None, None]
        out_rows.append(
            {
                **base,
                "output": name,
                "output_index": index,
                "is_headline": index == 0,
                "higher_is_better": _direction(out.get("higher_is_better", True)),
                "unit": out.get("unit") or "",
                "range_low": rng[0],
                "range_high": rng[1] if len(rng) > 1 else None,
                "record_mean": out.get("mean"),
                "record_ci_low": out.get("ci_low"),
                "record_ci_high": out.get("ci_high"),
                "record_n": out.get("n"),
            }
        )
    return out_rows


def _load_scores(path: Path | str, outputs: list[str]) -> UtteranceScores:
    rows = _read_score_rows(path)
    try:
        return _scores_from_rows(rows, outputs)
    except (AttributeError, KeyError, TypeError, ValueError):  # odd rows: the careful path
        return _scores_from_odd_rows(rows, outputs)


def _count_errors(errors: list[Any]) -> tuple[int, int]:
    """(not applicable, failed) among the rows' ``error`` fields."""
    n_na = n_failed = 0
    for err in errors:
        if err:
            if str(err).lower().startswith(NOT_APPLICABLE_PREFIX):
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
    return UtteranceScores(items, dict(zip(outputs, matrix)), *_count_errors(errors))


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
    values = {name: np.array([_number(v.get(name)) for v in ok], dtype=float) for name in outputs}
    return UtteranceScores(items, values, *_count_errors(errors))


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _normalise_checkpoints(raw: Any) -> dict[str, Any]:
    if isinstance(raw, list):
        raw = {"checkpoints": raw}
    ckpts = [c for c in raw.get("checkpoints", []) if isinstance(c, dict) and "step" in c]
    return {
        "checkpoints": sorted(ckpts, key=lambda c: c["step"]),
        "selected": raw.get("selected") or {},
        "dev_metric": raw.get("dev_metric"),
    }


def check_metric_versions(loaded: LoadedResults) -> None:
    """Raise :class:`TTSAdaptError` when one metric appears with several versions."""
    if not len(loaded.records):
        return
    head = loaded.records[loaded.records["is_headline"]]
    problems = []
    for metric, grp in head.groupby("metric", sort=True):
        versions = sorted(grp["metric_version"].unique())
        if len(versions) > 1:
            examples = "; ".join(
                f"version {v}: runs {', '.join(sorted(grp[grp['metric_version'] == v]['run_id'])[:3])}"
                for v in versions
            )
            problems.append(f"metric '{metric}' has versions {', '.join(versions)} ({examples})")
    if problems:
        raise TTSAdaptError(
            f"{loaded.suite_dir}: refusing to mix records of different metric versions: "
            + " | ".join(problems)
            + ". Re-score the older runs (ttsadapt run ... --overwrite always) or move them aside."
        )


# --------------------------------------------------------------------------- statistics


@dataclass
class Summary:
    """The statistics the three outputs are drawn from."""

    suite: str
    systems: pd.DataFrame  # one row per system
    table: pd.DataFrame  # one row per system x metric x output (pooled statistics)
    per_seed: pd.DataFrame  # one row per system x seed x metric x output (from the records)
    checkpoints: (
        pd.DataFrame
    )  # one row per run x checkpoint: system, seed, step, val_loss, dev_score
    select: str
    confidence: float
    notes: list[str] = field(default_factory=list)
    n_comparisons: int = 0  # p-values in the Holm family (every system x metric output vs anchor)
    # metric -> what its records say about the listening test(s) it came from (human metrics only)
    human: dict[str, dict[str, Any]] = field(default_factory=dict)


def _params_text(params: Any) -> str:
    if not params:
        return ""
    if isinstance(params, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    return str(params)


def _varying_params(method_params: list[tuple[str, Any]]) -> dict[str, list[str]]:
    """Per method, the parameter names whose values differ between its systems: the labels show
    only those (a sweep's axis), the CSV keeps every parameter."""
    by_method: dict[str, list[dict[str, Any]]] = {}
    for method, params in method_params:
        by_method.setdefault(method, []).append(params if isinstance(params, dict) else {})
    out = {}
    for method, dicts in by_method.items():
        keys = sorted({k for d in dicts for k in d})
        out[method] = [k for k in keys if len({_canon(d.get(k)) for d in dicts}) > 1]
    return out


def _recipe_text(recipe: Any) -> str:
    if recipe is None or (isinstance(recipe, float) and math.isnan(recipe)):
        return ""
    if isinstance(recipe, str):
        return recipe
    if isinstance(recipe, dict) and "name" in recipe:
        return str(recipe["name"])
    return _canon(recipe)


def _median(nums: np.ndarray) -> float:
    """Median of the non-NaN entries of a float array, NaN when there are none."""
    nums = nums[~np.isnan(nums)]
    return float(np.median(nums)) if nums.size else math.nan


def _systems_frame(records: pd.DataFrame, loaded: LoadedResults, select: str) -> pd.DataFrame:
    runs = records.drop_duplicates("run_id")
    sel_loss = {rid: _selected_val_loss(ck, select) for rid, ck in loaded.checkpoints.items()}
    col = {
        name: runs[name].to_numpy()
        for name in ("run_id", "backbone", "method", "method_params", "data_recipe", "is_anchor")
    }
    col["synthesis"] = (
        runs["synthesis"].to_numpy() if "synthesis" in runs else np.full(len(runs), "", object)
    )
    for name in ("trainable_params", "total_params", "adapter_bytes"):
        col[name] = pd.to_numeric(runs[name], errors="coerce").to_numpy(float, na_value=np.nan)
    seeds_all = runs["seed"].to_numpy()
    seed_missing = pd.isna(runs["seed"]).to_numpy()
    rows = []
    groups = runs.groupby("system", sort=False).indices
    varying = _varying_params(
        [(col["method"][w[0]], col["method_params"][w[0]]) for w in groups.values()]
    )
    for system, where in groups.items():
        first = where[0]
        params = _params_text(col["method_params"][first])
        method_params = col["method_params"][first]
        shown = varying.get(col["method"][first], [])
        short = _params_text(
            {k: method_params[k] for k in shown if k in method_params}
            if isinstance(method_params, dict)
            else method_params
        )
        recipe = _recipe_text(col["data_recipe"][first])
        label = f"{col['backbone'][first]} / {col['method'][first]}"
        label += f" ({short})" if short else ""
        label += f" / {recipe}" if recipe else ""
        synthesis = col["synthesis"][first] or ""
        label += f" / {synthesis}" if synthesis else ""
        trainable = _median(col["trainable_params"][where])
        total = _median(col["total_params"][where])
        run_ids = list(col["run_id"][where])
        losses = [sel_loss.get(r) for r in run_ids]
        losses = [v for v in losses if v is not None and math.isfinite(v)]
        seeds = dict.fromkeys(seeds_all[where[~seed_missing[where]]].tolist())
        rows.append(
            {
                "system": system,
                "label": label,
                "backbone": col["backbone"][first],
                "method": col["method"][first],
                "method_params": params,
                "data_recipe": recipe,
                "is_anchor": bool(col["is_anchor"][first]),
                "synthesis": synthesis,
                "seeds": ", ".join(str(s) for s in sorted(seeds)),
                "n_seeds": len(seeds),
                "n_runs": len(where),
                "run_ids": run_ids,
                "trainable_params": trainable,
                "total_params": total,
                "trainable_share_pct": 100.0 * trainable / total
                if total and not math.isnan(total)
                else math.nan,
                "adapter_mb": _median(col["adapter_bytes"][where]) / 1e6,
                "selected_val_loss": float(np.mean(losses)) if losses else math.nan,
            }
        )
    frame = pd.DataFrame(rows)
    dup = frame["label"].duplicated(keep=False)
    if dup.any():  # same name, different versions or backbone params: keep rows apart
        frame.loc[dup, "label"] = [
            f"{lab} #{i + 1}" for i, lab in enumerate(frame.loc[dup, "label"])
        ]
    return frame


def _selected_val_loss(ck: dict[str, Any], select: str) -> float | None:
    step = _selected_step(ck, select)
    for c in ck["checkpoints"]:
        if c["step"] == step and c.get("val_loss") is not None:
            return float(c["val_loss"])
    return None


def _selected_step(ck: dict[str, Any], select: str) -> int | None:
    """The checkpoint step a rule picks: the runner's ``selected`` entry, else recomputed."""
    rule = "dev_metric" if select == "dev_score" else select
    chosen = ck["selected"].get(f"by_{rule}")
    if chosen is None and select == "dev_score":
        chosen = ck["selected"].get("by_dev_score")
    if chosen is not None:
        return chosen
    fld = _SELECT_FIELD[select]
    cands = [c for c in ck["checkpoints"] if c.get(fld) is not None]
    if not cands:
        return None
    pick = min if fld == "val_loss" else max
    return pick(cands, key=lambda c: c[fld])["step"]


@dataclass
class _AnchorScores:
    """An anchor's per-utterance values for one metric, dense over item codes.

    ``column`` maps an output to its column; the last column is all NaN (for outputs the anchor
    lacks). ``by_seed[seed]`` is ``(n_codes, n_outputs + 1)``: that seed's values where its run has
    the output, else the mean over the anchor's seeds; ``mean`` is used for other seeds.
    """

    column: dict[str, int]
    by_seed: dict[Any, np.ndarray]
    mean: np.ndarray


@dataclass
class _Pooled:
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


class _Pairing:
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
        self._anchor: dict[tuple[str, str], _AnchorScores | None] = {}

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
    ) -> _AnchorScores | None:
        key = (anchor_system, metric)
        if key not in self._anchor:
            self._anchor[key] = self._build_anchor(anchor_runs, metric)
        return self._anchor[key]

    def _build_anchor(
        self, anchor_runs: list[tuple[str, Any]], metric: str
    ) -> _AnchorScores | None:
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
        return _AnchorScores(column, by_seed, np.hstack([mean, nan_col]))

    def pooled(
        self,
        runs: list[tuple[str, Any]],
        anchor_system: str | None,
        anchor_runs: list[tuple[str, Any]],
        metric: str,
        outputs: list[str],
    ) -> list[_Pooled]:
        """Per output of ``metric``: a system's values and paired differences per item, item errors.

        Run ``r`` (seed ``s``) of the system is paired item by item with the anchor's seed-``s``
        run, or with the anchor's per-item mean over its seeds when it has no seed ``s`` (so an
        anchor with one seed serves every seed of the system).
        """
        k = len(outputs)
        ref = self.anchor(anchor_system, anchor_runs, metric) if anchor_runs else None
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
            _Pooled(*per_value[j], *per_diff[j], int(n_na[j]), int(n_failed[j])) for j in range(k)
        ]


def summarise(
    loaded: LoadedResults,
    select: str = "val_loss",
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Summary:
    """Pooled means, bootstrap intervals, deltas to the anchor, Wilcoxon p-values and ranks.

    Intervals resample utterances (item ids) with all their seeds' values (cluster bootstrap);
    the Wilcoxon test runs on one paired difference per utterance (its mean over seeds); p-values
    are Holm-adjusted over every comparison in the table (all outputs of all metrics of all
    systems against their anchor; comparisons without a test, NaN, are not counted) and stars come
    from the adjusted values. With one seed per system these are the ordinary item-level bootstrap
    and test.
    """
    if select not in SELECT_CHOICES:
        raise ConfigError(f"select: expected one of {', '.join(SELECT_CHOICES)}, got {select!r}")
    records = loaded.records
    notes: list[str] = []
    systems = _systems_frame(records, loaded, select)
    runs = records.drop_duplicates("run_id")
    runs_of: dict[str, list[tuple[str, Any]]] = {}
    for rid, system, run_seed in zip(
        runs["run_id"].tolist(), runs["system"].tolist(), runs["seed"].tolist()
    ):
        runs_of.setdefault(system, []).append((rid, run_seed))
    anchors: dict[Any, str] = {}
    # with a [synthesis] sweep each setting has its own anchor: a system's deltas are to the
    # anchor decoded the same way (else to its backbone's first anchor)
    setting_anchors: dict[tuple[Any, str], str] = {}
    for row in systems[systems["is_anchor"]].itertuples():
        setting_anchors.setdefault((row.backbone, row.synthesis), row.system)
        if row.backbone in anchors:
            if row.synthesis:
                continue
            notes.append(
                f"backbone {row.backbone} has several anchor systems; deltas use {anchors[row.backbone]}"
            )
            continue
        anchors[row.backbone] = row.system
    synthesis_of = dict(zip(systems["system"], systems["synthesis"]))
    for bb in sorted(set(systems["backbone"]) - set(anchors), key=str):
        notes.append(f"backbone {bb} has no zero-shot anchor run: no deltas for its systems")

    keys = records.drop_duplicates(["system", "metric", "output"])[
        ["system", "metric", "output", "output_index", "is_headline", "higher_is_better", "unit"]
        + ["metric_version"]
    ]
    rows = []
    backbone_of = dict(zip(systems["system"], systems["backbone"]))
    pairing = _Pairing(loaded)
    key_rows = list(keys.itertuples(index=False))
    groups: dict[tuple[str, str], list[int]] = {}
    for i, k in enumerate(key_rows):
        groups.setdefault((k.system, k.metric), []).append(i)
    stats: list[_Pooled | None] = [None] * len(key_rows)
    for (system, metric), where in groups.items():  # all outputs of a metric at once
        anchor = setting_anchors.get(
            (backbone_of[system], synthesis_of[system]), anchors.get(backbone_of[system])
        )
        anchor_runs = runs_of[anchor] if anchor and anchor != system else []
        outputs = [key_rows[i].output for i in where]
        for i, st in zip(
            where, pairing.pooled(runs_of[system], anchor, anchor_runs, metric, outputs)
        ):
            stats[i] = st
    value_clusters, diff_clusters, item_diffs = [], [], []
    for k, st in zip(key_rows, stats):
        sums, sizes = st.sums, st.sizes
        if not sizes.size:  # no per-utterance rows: fall back on the records' own numbers
            recs = records[
                (records["system"] == k.system)
                & (records["metric"] == k.metric)
                & (records["output"] == k.output)
            ]
            sums = pd.to_numeric(recs["record_mean"], errors="coerce").dropna().to_numpy()
            sizes = np.ones(sums.size)
        value_clusters.append((sums, sizes))
        diff_clusters.append((st.diff_sums, st.diff_sizes))
        item_diffs.append(st.diff_sums / st.diff_sizes)
        n_pairs = float(st.diff_sizes.sum())
        rows.append(
            {
                **k._asdict(),
                "mean": float(sums.sum() / sizes.sum()) if sizes.size else math.nan,
                "n": int(sizes.sum()),
                "n_not_applicable": st.n_not_applicable,
                "n_item_errors": st.n_failed,
                "delta": float(st.diff_sums.sum() / n_pairs) if n_pairs else math.nan,
                "n_pairs": int(n_pairs),
                "n_paired_items": int(st.diff_sizes.size),
            }
        )
    boot = Bootstrapper(confidence=confidence, n_resamples=n_resamples, seed=seed)
    ci_low, ci_high = boot.ci_clusters(value_clusters)  # items resampled with all their seeds
    d_low, d_high = boot.ci_clusters(diff_clusters)
    p_raw = paired_wilcoxon_many(item_diffs)  # on per-item means over seeds
    p_holm = holm_adjust(p_raw)  # one family: every comparison of this leaderboard
    n_comparisons = int(np.isfinite(p_raw).sum())
    table = pd.DataFrame(rows)
    table["ci_low"], table["ci_high"] = ci_low, ci_high
    table["delta_ci_low"], table["delta_ci_high"] = d_low, d_high
    table["p_value_raw"] = p_raw
    table["p_value_holm"] = p_holm
    table["holm_family_size"] = pd.Series(np.full(len(table), n_comparisons), dtype="Int64").where(
        np.isfinite(p_raw), pd.NA
    )
    table["stars"] = [stars(p) for p in p_holm]
    # outputs without a direction (higher_is_better None) get no rank and stay out of the mean rank
    directed = table["higher_is_better"].map(has_direction).astype(bool)
    hib = table["higher_is_better"].where(directed, True).astype(bool)
    signed = table["mean"].where(hib, -table["mean"]).where(directed)
    table["rank"] = (
        signed.groupby([table["metric"], table["output"]])
        .rank(ascending=False, method="min")
        .astype("Int64")
    )
    table = table.merge(
        systems[["system", "label", "is_anchor", "backbone", "method"]], on="system", how="left"
    )
    # the mean rank is over quality: the runner's latency record is shown, not ranked into it
    head = table[table["is_headline"] & (table["metric"] != "latency")]
    mean_rank = head.groupby("system")["rank"].mean()
    systems["mean_rank"] = systems["system"].map(mean_rank)
    systems = systems.sort_values(
        ["backbone", "is_anchor", "mean_rank", "label"], ascending=[True, False, True, True]
    ).reset_index(drop=True)

    per_seed = records[
        ["system", "run_id", "seed", "metric", "output", "output_index", "is_headline"]
        + ["record_mean", "record_ci_low", "record_ci_high", "record_n"]
    ].rename(
        columns={
            "record_mean": "mean",
            "record_ci_low": "ci_low",
            "record_ci_high": "ci_high",
            "record_n": "n",
        }
    )
    ck_rows = []
    run_system = dict(zip(runs["run_id"].tolist(), runs["system"].tolist()))
    run_seed = dict(zip(runs["run_id"].tolist(), runs["seed"].tolist()))
    for rid, ck in loaded.checkpoints.items():
        if rid not in run_system:
            continue
        chosen = _selected_step(ck, select)
        for c in ck["checkpoints"]:
            ck_rows.append(
                {
                    "run_id": rid,
                    "system": run_system[rid],
                    "seed": run_seed[rid],
                    "step": c["step"],
                    "val_loss": c.get("val_loss"),
                    "dev_score": c.get("dev_score"),
                    "dev_metric": ck.get("dev_metric"),
                    "selected": c["step"] == chosen,
                }
            )
    checkpoints = pd.DataFrame(
        ck_rows,
        columns=[
            "run_id",
            "system",
            "seed",
            "step",
            "val_loss",
            "dev_score",
            "dev_metric",
            "selected",
        ],
    )
    human = human_metrics(loaded)
    _two_way_intervals(table, records, set(human))
    for metric, info in human.items():
        if len(info["tests"]) > 1:
            notes.append(
                f"{metric}: records come from {len(info['tests'])} listening tests "
                f"({', '.join(info['tests'])}); systems rated in different tests had different "
                "raters, so compare their numbers with care"
            )
    return Summary(
        suite=loaded.suite,
        systems=systems,
        table=table,
        per_seed=per_seed,
        checkpoints=checkpoints,
        select=select,
        confidence=confidence,
        notes=notes,
        n_comparisons=n_comparisons,
        human=human,
    )


def _two_way_intervals(table: pd.DataFrame, records: pd.DataFrame, human: set[str]) -> None:
    """A human metric rated on one run per system: its interval from the record, which resamples
    raters and sentences (the item bootstrap alone ignores how much raters differ)."""
    if not human:
        return
    recs = records[records["metric"].isin(human)]
    counts = recs.groupby(["system", "metric", "output"])["run_id"].transform("nunique")
    one = recs[counts == 1].set_index(["system", "metric", "output"])
    for i, key in enumerate(zip(table["system"], table["metric"], table["output"])):
        if key in one.index:
            row = one.loc[key]
            lo, hi = _number(row["record_ci_low"]), _number(row["record_ci_high"])
            if math.isfinite(lo) and math.isfinite(hi):
                table.loc[table.index[i], ["ci_low", "ci_high"]] = [lo, hi]


def human_metrics(loaded: LoadedResults) -> dict[str, dict[str, Any]]:
    """Per human metric (records with a ``human`` block): raters, tests, agreement, exclusions.

    ``n_raters`` is the largest number of raters kept by any of its tests; ``alpha`` the
    agreement (Krippendorff's alpha, interval) of each test, by test id.
    """
    out: dict[str, dict[str, Any]] = {}
    for (_run_id, metric), info in sorted(loaded.human.items()):
        entry = out.setdefault(
            metric,
            {"n_raters": 0, "n_excluded": 0, "tests": [], "alpha": {}, "kind": info.get("kind")},
        )
        test = str(info.get("test_id", "?"))
        if test not in entry["tests"]:
            entry["tests"].append(test)
        entry["n_raters"] = max(entry["n_raters"], int(info.get("n_raters") or 0))
        entry["n_excluded"] = max(entry["n_excluded"], int(info.get("n_raters_excluded") or 0))
        alpha = info.get("alpha")
        if alpha is not None:
            entry["alpha"][test] = float(alpha)
    return out


def rank_agreement(summary: Summary) -> pd.DataFrame:
    """How each human metric and each automatic metric rank the systems (Spearman's rho).

    Over the systems that have both headline means; each mean is signed by its direction
    (lower-is-better metrics negated), so rho = +1 means the same order, -1 the reverse. Fewer
    than three shared systems give no rho.
    """
    from scipy.stats import spearmanr

    cols = ["Human metric", "Automatic metric", "Systems", "Spearman ρ", "p", "Best by human"]
    cols += ["Best by automatic"]
    if not summary.human:
        return pd.DataFrame(columns=cols)
    head = summary.table[summary.table["is_headline"]]
    head = head[head["higher_is_better"].map(has_direction).astype(bool)]
    labels = dict(zip(summary.systems["system"], summary.systems["label"]))
    hib = head["higher_is_better"].astype(bool)
    signed = head.assign(score=np.where(hib, head["mean"], -head["mean"]))
    by_metric = {m: grp.set_index("system")["score"] for m, grp in signed.groupby("metric")}
    rows = []
    for hm in sorted(summary.human):
        if hm not in by_metric:
            continue
        for am in sorted(by_metric):
            if am in summary.human:
                continue
            both = pd.concat([by_metric[hm], by_metric[am]], axis=1, join="inner").dropna()
            rho = p = math.nan
            if len(both) >= 3:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # constant input: rho is NaN, said below
                    res = spearmanr(both.iloc[:, 0], both.iloc[:, 1])
                rho, p = float(res.statistic), float(res.pvalue)
            rows.append(
                {
                    "Human metric": hm,
                    "Automatic metric": am,
                    "Systems": len(both),
                    "Spearman ρ": "–" if math.isnan(rho) else f"{rho:+.2f}",
                    "p": "–" if math.isnan(p) else f"{p:.3f}",
                    "Best by human": labels.get(both.iloc[:, 0].idxmax(), "") if len(both) else "",
                    "Best by automatic": labels.get(both.iloc[:, 1].idxmax(), "")
                    if len(both)
                    else "",
                }
            )
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------- listening view

AUDIO_FOLDER = "leaderboard_audio"
AUDIO_MODES = ("folder", "embed", "none")
TRANSCRIPT_METRIC = "cer"  # its score rows carry extra.transcript (and the normalised text)
_NO_SPACE_LANGUAGES = {"th", "lo", "km", "my", "ja", "zh"}


@dataclass
class ItemInfo:
    """What a run folder does not keep about an evaluation sentence: its text and recordings."""

    id: str
    text: str | None = None
    speaker: str | None = None
    language: str | None = None
    recording: Path | None = None  # the real recording of this sentence (PESQ's reference)
    prompt: Path | None = None  # the target speaker's prompt (any sentence)


def read_eval_manifest(path: Path | str) -> dict[str, ItemInfo]:
    """The evaluation sentences of a corpus manifest (JSON Lines, the project's keys).

    A line's ``audio`` is the real recording of its sentence (``reference_audio`` when given
    instead); ``speaker_prompt`` (old spelling ``ref_audio``) is the speaker's prompt, else, as the
    runner chooses it, the speaker's first clip (by id) outside the evaluation split. When some
    line has ``"split": "eval"`` only those lines are evaluation sentences, else every line is.
    Raises :class:`TTSAdaptError` naming the file and line of a line that cannot be read.
    """
    path = Path(path)
    base = path.parent
    lines = []
    for n, row in iter_jsonl_objects(path, TTSAdaptError):
        if not row.get("id") and not row.get("audio"):
            raise TTSAdaptError(f'{path}: line {n}: expected an "id" or an "audio" path')
        lines.append(row)

    def resolve(value: Any) -> Path | None:
        return (base / str(value)) if value else None

    def item_id(row: dict[str, Any]) -> str:
        return str(row.get("id") or Path(str(row["audio"])).stem)

    has_eval = any(r.get("split") == "eval" for r in lines)
    prompts: dict[str, Path] = {}
    for row in sorted(lines, key=item_id):
        spk = row.get("speaker")
        if (
            has_eval
            and row.get("split") != "eval"
            and spk
            and spk not in prompts
            and row.get("audio")
        ):
            prompts[str(spk)] = resolve(row["audio"])
    out: dict[str, ItemInfo] = {}
    for row in lines:
        if has_eval and row.get("split") != "eval":
            continue
        spk = row.get("speaker")
        prompt = resolve(row.get("speaker_prompt") or row.get("ref_audio"))
        out[item_id(row)] = ItemInfo(
            id=item_id(row),
            text=row.get("text"),
            speaker=None if spk is None else str(spk),
            language=row.get("language"),
            recording=resolve(row.get("reference_audio") or row.get("audio")),
            prompt=prompt or prompts.get(str(spk)),
        )
    return out


def safe_name(item_id: str) -> str:
    """An item id as the runner names its audio file (``audio/<safe>.wav``)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(item_id))


def encode_audio(src: Path | str, dst: Path | str) -> Path:
    """Write ``src`` (any format libsndfile reads) to ``dst`` as mono Ogg/Vorbis; return ``dst``.

    Vorbis at libsndfile's default quality is ~10x smaller than 16-bit WAV and every browser
    decodes it. Raises :class:`TTSAdaptError` naming the file when it cannot be read.
    """
    import soundfile as sf

    try:
        audio, sr = sf.read(str(src), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile's errors are plain RuntimeErrors
        raise TTSAdaptError(f"{src}: cannot read audio ({exc})") from None
    mono = audio.mean(axis=1) if audio.size else np.zeros(1, dtype=np.float32)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(dst), np.clip(mono, -1.0, 1.0), sr, format="OGG", subtype="VORBIS")
    return dst


class AudioSink:
    """Puts audio where the page can play it: a sibling folder, data URIs, or nowhere.

    ``folder``: ``<page folder>/leaderboard_audio/<name>.ogg`` (relative URL); ``embed``: a
    ``data:audio/ogg;base64,…`` URI; ``none``: no audio (players are left out). Each source file is
    encoded once per build.
    """

    def __init__(self, mode: str, folder: Path | None = None, url_prefix: str = AUDIO_FOLDER):
        if mode not in AUDIO_MODES:
            raise ConfigError(f"audio: expected one of {', '.join(AUDIO_MODES)}, got {mode!r}")
        if mode == "folder" and folder is None:
            raise ConfigError("audio: mode 'folder' needs a folder")
        self.mode = mode
        self.folder = folder
        self.url_prefix = url_prefix
        self.n_files = 0
        self.n_bytes = 0
        self.failed: list[str] = []
        self.urls: list[str] = []  # the page refers to audio by index into this list
        self._done: dict[str, int | None] = {}

    def add(self, src: Path | None, name: str) -> int | None:
        """The index in :attr:`urls` of ``src``'s URL (``name`` is its file name without suffix),
        None without audio. A file used twice (a speaker's prompt) is stored once."""
        if self.mode == "none" or src is None or not Path(src).is_file():
            return None
        key = os.fspath(src)
        if key in self._done:
            return self._done[key]
        import base64
        import tempfile
        from urllib.parse import quote

        try:
            if self.mode == "folder":
                dst = encode_audio(src, self.folder / f"{name}.ogg")
                self.n_bytes += dst.stat().st_size
                url = quote(f"{self.url_prefix}/{name}.ogg")
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    data = encode_audio(src, Path(tmp) / "a.ogg").read_bytes()
                self.n_bytes += len(data)
                url = "data:audio/ogg;base64," + base64.b64encode(data).decode("ascii")
        except TTSAdaptError as exc:
            self.failed.append(str(exc))
            self._done[key] = None
            return None
        self.n_files += 1
        self.urls.append(url)
        self._done[key] = len(self.urls) - 1
        return self._done[key]


def _word_key(word: str) -> str:
    import unicodedata

    return "".join(ch for ch in word.casefold() if not unicodedata.category(ch).startswith("P"))


def transcript_diff(text: str, transcript: str, language: str | None = None) -> list[list[str]]:
    """A word-level diff of ``transcript`` against ``text``: ``[[op, words], …]``.

    ``op`` is ``=`` (same words, as transcribed), ``s`` (transcribed words replacing the text's:
    ``[op, heard, expected]``), ``i`` (words only in the transcript) or ``d`` (text words the
    transcript lacks). Words compare case- and punctuation-blind; languages written without spaces
    compare character by character.
    """
    import difflib

    lang = (language or "").split("-")[0].lower()
    if lang in _NO_SPACE_LANGUAGES:
        a, b = list(text.replace(" ", "")), list(transcript.replace(" ", ""))
        joiner = ""
    else:
        a, b = text.split(), transcript.split()
        joiner = " "
    ka, kb = [_word_key(w) for w in a], [_word_key(w) for w in b]
    out: list[list[str]] = []
    matcher = difflib.SequenceMatcher(a=ka, b=kb, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        heard, expected = joiner.join(b[j1:j2]), joiner.join(a[i1:i2])
        if op == "equal":
            out.append(["=", heard])
        elif op == "replace":
            out.append(["s", heard, expected])
        elif op == "insert":
            out.append(["i", heard])
        else:
            out.append(["d", expected])
    return out


def _first_run(
    loaded: LoadedResults, run_ids: list[str], seeds: dict[str, Any] | None = None
) -> str:
    """The run a system's audio is taken from: its lowest seed with an audio folder.

    ``seeds`` maps run id to seed (computed from the records when not given)."""
    if seeds is None:
        runs = loaded.records.drop_duplicates("run_id")
        seeds = dict(zip(runs["run_id"], runs["seed"]))

    def key(rid: str) -> tuple[bool, float, str]:
        seed = seeds.get(rid)
        has_audio = (loaded.suite_dir / "runs" / rid / "audio").is_dir()
        num = float(seed) if isinstance(seed, int | float) and not pd.isna(seed) else math.inf
        return (not has_audio, num, rid)

    return min(run_ids, key=key)


def _has_transcripts(run_dir: Path) -> bool:
    """Whether the run's CER score rows carry transcripts (its first row is enough)."""
    try:
        with open(run_dir / "scores" / f"{TRANSCRIPT_METRIC}.jsonl", "rb") as fh:
            return b'"transcript"' in fh.readline()
    except OSError:
        return False


def _run_rows(run_dir: Path, name: str) -> list[dict[str, Any]]:
    path = run_dir / name
    if not path.is_file():
        return []
    try:
        return [r for r in _read_score_rows(path) if isinstance(r, dict)]
    except (OSError, ValueError):
        return []


def listening_view(
    loaded: LoadedResults,
    summary: Summary,
    sink: AudioSink,
    items: dict[str, ItemInfo] | None = None,
) -> dict[str, Any]:
    """Per evaluation sentence, every system's audio, transcript and headline scores (for the page).

    Each system is heard through one run (its lowest seed with audio; the cell says which seed).
    ``items`` (from :func:`read_eval_manifest`) adds the text, the speaker's prompt and the real
    recording; without it the text is the CER metric's normalised reference where there is one.
    """
    items = items or {}
    head = summary.table[summary.table["is_headline"]]
    digits = _digits(summary.table)
    metric_rows = head.drop_duplicates("metric").sort_values("metric")
    metrics = [
        {
            "name": r.metric,
            "output": r.output,
            "hib": bool(r.higher_is_better),
            "digits": digits.get((r.metric, r.output), 3),
            "human": r.metric in summary.human,
        }
        for r in metric_rows.itertuples()
    ]
    runs_dir = loaded.suite_dir / "runs"
    runs = loaded.records.drop_duplicates("run_id")
    seeds = dict(zip(runs["run_id"].tolist(), runs["seed"].tolist()))
    shown = [_first_run(loaded, list(ids), seeds) for ids in summary.systems["run_ids"]]
    if not any(
        (runs_dir / rid / "audio").is_dir() or _has_transcripts(runs_dir / rid) for rid in shown
    ):  # nothing to hear or read: no section (per-utterance scores stay in scores/)
        return {"items": [], "systems": [], "metrics": metrics, "speakers": [], "media": []}
    systems, cells_of = [], []
    order: dict[str, None] = {}
    meta: dict[str, dict[str, Any]] = {}
    for row, rid in zip(summary.systems.itertuples(), shown):
        run_dir = runs_dir / rid
        rel = f"runs/{rid}/"
        files = {
            name: rel + fname
            for name, fname in (
                ("config", "config.json"),
                ("log", "run.log"),
                ("curves", "curves.jsonl"),
                ("run", "run.json"),
            )
            if (run_dir / fname).is_file()
        }
        seed = seeds.get(rid)
        systems.append(
            {
                "label": row.label,
                "anchor": bool(row.is_anchor),
                "run": rid,
                "seed": None if seed is None or pd.isna(seed) else str(seed),
                "seeds": seeds_text(row.n_seeds, row.seeds),
                "href": rel,
                "files": files,
                "runs": len(row.run_ids),
            }
        )
        cells: dict[str, dict[str, Any]] = {}
        synth = _run_rows(run_dir, "synthesis.jsonl")
        asr = _run_rows(run_dir, f"scores/{TRANSCRIPT_METRIC}.jsonl")
        rows = synth or asr
        if not rows:
            first = next((m["name"] for m in metrics if (rid, m["name"]) in loaded.scores), None)
            rows = _run_rows(run_dir, f"scores/{first}.jsonl") if first else []
        for r in rows:
            item = str(r.get("item"))
            order.setdefault(item, None)
            m = meta.setdefault(item, {})
            if r.get("speaker") is not None:
                m.setdefault("speaker", str(r["speaker"]))
            if r.get("language"):
                m.setdefault("language", r["language"])
            cells.setdefault(item, {})
        for r in synth:
            if r.get("error"):
                cells.setdefault(str(r.get("item")), {})["e"] = str(r["error"])
        for r in asr:
            extra = r.get("extra") if isinstance(r.get("extra"), dict) else {}
            item = str(r.get("item"))
            if extra.get("transcript") is not None:
                cells.setdefault(item, {})["tr"] = str(extra["transcript"])
            if extra.get("reference_normalized"):
                meta.setdefault(item, {}).setdefault("norm_text", extra["reference_normalized"])
        for m_index, m in enumerate(metrics):
            sc = loaded.scores.get((rid, m["name"]))
            if sc is None:
                continue
            vals = next(iter(sc.values.values())) if sc.values else None
            if vals is None:
                continue
            for item, v in zip(sc.items, vals.tolist()):
                order.setdefault(item, None)
                cell = cells.setdefault(item, {})
                cell.setdefault("s", [None] * len(metrics))[m_index] = (
                    None if v != v else round(v, 6)
                )
        audio_dir = run_dir / "audio"
        if audio_dir.is_dir():
            for item in list(order):
                if item in cells:
                    src = audio_dir / f"{safe_name(item)}.wav"
                    url = sink.add(src, f"{rid}/{safe_name(item)}") if src.is_file() else None
                    if url is not None:
                        cells[item]["a"] = url
        cells_of.append(cells)
    out_items = []
    for item in sorted(order):
        info = items.get(item) or ItemInfo(item)
        m = meta.get(item, {})
        text = info.text or m.get("norm_text")
        language = info.language or m.get("language")
        speaker = info.speaker or m.get("speaker")
        row_cells = []
        for cells in cells_of:
            cell = cells.get(item)
            if cell is not None and "tr" in cell:
                transcript = cell.pop("tr")
                cell["t"] = (
                    transcript_diff(text, transcript, language) if text else [["=", transcript]]
                )
            row_cells.append(cell)
        out_items.append(
            {
                "id": item,
                "speaker": speaker,
                "text": text,
                "textSource": "manifest" if info.text else ("cer" if text else None),
                "prompt": sink.add(info.prompt, f"prompts/{safe_name(speaker or item)}"),
                "ref": sink.add(info.recording, f"recordings/{safe_name(item)}"),
                "cells": row_cells,
            }
        )
    speakers = sorted({i["speaker"] for i in out_items if i["speaker"]})
    return {
        "metrics": metrics,
        "systems": systems,
        "items": out_items,
        "speakers": speakers,
        "media": sink.urls,
        "audio": sink.mode,
        "audioFiles": sink.n_files,
        "audioBytes": sink.n_bytes,
        "audioFailed": sink.failed[:5],
    }


# --------------------------------------------------------------------------- writing


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return "–"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}f}"


def _digits(table: pd.DataFrame) -> dict[tuple[str, str], int]:
    """Decimal places per metric output: enough to show the interval width."""
    medians = (
        pd.DataFrame(
            {
                "metric": table["metric"],
                "output": table["output"],
                "width": (table["ci_high"] - table["ci_low"]).abs(),
                "size": table["mean"].abs(),
            }
        )
        .groupby(["metric", "output"])[["width", "size"]]
        .median()
    )
    out = {}
    for (metric, output), width, size in zip(
        medians.index, medians["width"].tolist(), medians["size"].tolist()
    ):
        if not width or math.isnan(width):
            width = size or 1.0
        out[(metric, output)] = int(min(4, max(1, 1 - math.floor(math.log10(width)))))
    return out


def _arrow(hib: bool | None) -> str:
    return direction_arrow(hib)


def _direction(value: Any) -> bool | None:
    """A record's ``higher_is_better``: True, False, or None for an output without a direction."""
    return None if value is None else bool(value)


def seeds_text(n: Any, seeds: str) -> str:
    """``1 (seed 0)``, ``3 (seeds 0, 1, 2)``: the count first, so one seed never reads as zero."""
    try:
        n = int(n)
    except (TypeError, ValueError):
        n = len([s for s in str(seeds).split(",") if s.strip()])
    if not n:
        return "0 (no seed recorded)"
    return f"{n} (seed{'s' if n > 1 else ''} {seeds})"


def metric_title(summary: Summary, metric: str, output: str, hib: bool) -> str:
    """``cer.cer ↓``, or for a human metric ``mos.mos ↑ (human, 5 raters)``."""
    title = f"{metric}.{output} {_arrow(hib)}"
    info = summary.human.get(metric)
    if info:
        title += f" (human, {info['n_raters']} raters)"
    return title


def headline_frame(summary: Summary, with_ci: bool = True) -> pd.DataFrame:
    """The human table: one row per system, headline metrics as mean [CI], Δ with stars, rank."""
    table = summary.table
    head = table[table["is_headline"]].copy()
    digits = _digits(table)
    metrics = list(dict.fromkeys(head.sort_values("metric")["metric"]))
    frame = pd.DataFrame(
        {
            "System": summary.systems["label"]
            + np.where(summary.systems["is_anchor"], " (anchor)", ""),
            "Seeds": [
                seeds_text(n, text)
                for n, text in zip(summary.systems["n_seeds"], summary.systems["seeds"])
            ],
            "Trainable %": summary.systems["trainable_share_pct"].map(lambda v: _fmt(v, 2)),
            "Adapter MB": summary.systems["adapter_mb"].map(lambda v: _fmt(v, 1)),
        }
    )
    index = {s: i for i, s in enumerate(summary.systems["system"])}
    for metric in metrics:
        rows = head[head["metric"] == metric]
        first = rows.iloc[0]
        name = metric_title(summary, metric, first["output"], first["higher_is_better"])
        dg = digits[(metric, first["output"])]
        cells = [""] * len(frame)
        deltas = [""] * len(frame)
        ranks = [""] * len(frame)
        for r in rows.itertuples():
            i = index[r.system]
            cells[i] = _fmt(r.mean, dg) + (
                f" [{_fmt(r.ci_low, dg)}, {_fmt(r.ci_high, dg)}]" if with_ci else ""
            )
            if r.is_anchor:
                deltas[i] = "anchor"
            elif not math.isnan(r.delta):
                deltas[i] = f"{r.delta:+.{dg}f}{r.stars}"
            ranks[i] = "" if r.rank is pd.NA else str(int(r.rank))
        frame[name] = cells
        frame[f"Δ {metric}"] = deltas
        frame[f"# {metric}"] = ranks
    frame["Mean rank"] = summary.systems["mean_rank"].map(lambda v: _fmt(v, 1))
    frame["Val loss"] = summary.systems["selected_val_loss"].map(lambda v: _fmt(v, 3))
    return frame


def _markdown_table(frame: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |"]
    lines.append("|" + "|".join("---" for _ in frame.columns) + "|")
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def _failures_frame(loaded: LoadedResults) -> pd.DataFrame:
    rows = [
        {"Run": f.run_id, "Status": f.status, "Metric": f.metric or "", "Error": f.error}
        for f in loaded.failed_runs + loaded.failed_records
    ]
    rows += [
        {"Run": r, "Status": "unfinished", "Metric": "", "Error": "no DONE marker (will be redone)"}
        for r in loaded.unfinished_runs
    ]
    return pd.DataFrame(rows, columns=["Run", "Status", "Metric", "Error"])


def _item_issues_frame(summary: Summary) -> pd.DataFrame:
    head = summary.table[summary.table["is_headline"]]
    grp = head.groupby("metric")[["n", "n_not_applicable", "n_item_errors"]].sum()
    grp = grp.reset_index().rename(
        columns={
            "metric": "Metric",
            "n": "Scored items",
            "n_not_applicable": "Not applicable",
            "n_item_errors": "Failed items",
        }
    )
    return grp


def _per_seed_frame(summary: Summary) -> pd.DataFrame:
    ps = summary.per_seed[summary.per_seed["is_headline"]]
    digits = _digits(summary.table)
    labels = dict(zip(summary.systems["system"], summary.systems["label"]))
    ps = ps.assign(
        cell=[
            f"{_fmt(m, digits.get((mt, o), 3))} [{_fmt(lo, digits.get((mt, o), 3))}, "
            f"{_fmt(hi, digits.get((mt, o), 3))}]"
            for m, lo, hi, mt, o in zip(
                ps["mean"], ps["ci_low"], ps["ci_high"], ps["metric"], ps["output"]
            )
        ],
        System=ps["system"].map(labels),
        Seed=ps["seed"].astype(str),
    )
    wide = ps.pivot_table(
        index=["System", "Seed"], columns="metric", values="cell", aggfunc="first"
    )
    order = {lab: i for i, lab in enumerate(summary.systems["label"])}
    wide = wide.reset_index()
    wide = wide.sort_values(
        ["System", "Seed"], key=lambda s: s.map(order) if s.name == "System" else s
    )
    wide.columns.name = None
    return wide


def _legend(summary: Summary) -> list[str]:
    pct = int(round(summary.confidence * 100))
    family = (
        f"over all {summary.n_comparisons} comparisons of this leaderboard"
        if summary.n_comparisons
        else "over the comparisons of this leaderboard (none could be tested here)"
    )
    return [
        f"Means over all utterances and seeds with {pct} % bootstrap intervals (BCa); the "
        "bootstrap resamples utterances, each with all its seeds.",
        "Δ: mean paired difference to the zero-shot anchor of the same backbone (same utterance, "
        "system seed s against anchor seed s; where the anchor lacks seed s, its mean over its "
        "seeds).",
        "Stars: two-sided Wilcoxon signed-rank test on the per-utterance mean differences (over "
        f"seeds), Holm-adjusted for multiple comparisons {family} (every system × metric "
        "output against its anchor, one family): *** p < 0.001, ** p < 0.01, * p < 0.05 "
        "(adjusted). "
        "Raw and adjusted p-values are in leaderboard.csv (p_value_raw, p_value_holm).",
        "↑ higher is better, ↓ lower is better; # is the rank among all systems (1 = best).",
        f"Val loss: validation loss of the checkpoint selected by {summary.select}, mean over seeds.",
    ] + (
        [
            "Human metrics (listening tests, ttsadapt listen): per sentence the mean over the "
            "kept raters; the interval resamples raters and sentences (two-way bootstrap); Δ "
            "and the Wilcoxon test pair sentences with the anchor's."
        ]
        if summary.human
        else []
    )


def report_tables(loaded: LoadedResults, summary: Summary) -> dict[str, pd.DataFrame]:
    """The tables of the Markdown and HTML pages, by section title (built once for both)."""
    tables = {
        "Leaderboard": headline_frame(summary),
        "Per seed (headline outputs, from the records)": _per_seed_frame(summary),
        "Items not scored": _item_issues_frame(summary),
        "Failed runs": _failures_frame(loaded),
    }
    if summary.human:
        tables[HUMAN_TITLE] = human_frame(summary)
        tables[AGREEMENT_TITLE] = rank_agreement(summary)
    return tables


HUMAN_TITLE = "Listening tests"
AGREEMENT_TITLE = "How people and the automatic metrics rank the systems"


def human_frame(summary: Summary) -> pd.DataFrame:
    """One row per human metric: its tests, raters kept and excluded, agreement."""
    rows = []
    for metric, info in sorted(summary.human.items()):
        alphas = ", ".join(f"{a:.2f}" for a in info["alpha"].values()) or "–"
        rows.append(
            {
                "Metric": metric,
                "Kind": info.get("kind") or "",
                "Tests": ", ".join(info["tests"]),
                "Raters kept": info["n_raters"],
                "Raters excluded": info["n_excluded"],
                "Krippendorff α (interval)": alphas,
            }
        )
    return pd.DataFrame(rows)


def write_markdown(
    path: Path,
    loaded: LoadedResults,
    summary: Summary,
    tables: dict[str, pd.DataFrame] | None = None,
) -> None:
    tables = tables or report_tables(loaded, summary)
    parts = [
        f"# Leaderboard: {summary.suite}",
        "",
        f"{len(loaded.run_ids)} finished runs, {len(summary.systems)} systems, "
        f"{len(loaded.failed_runs)} failed and {len(loaded.unfinished_runs)} unfinished runs.",
        "",
        _markdown_table(tables["Leaderboard"]),
        "",
        *[f"- {line}" for line in _legend(summary)],
        "",
        "## Per seed (headline outputs, from the records)",
        "",
        _markdown_table(tables["Per seed (headline outputs, from the records)"]),
        "",
        "## Items not scored",
        "",
        _markdown_table(tables["Items not scored"]),
        "",
    ]
    for title in (HUMAN_TITLE, AGREEMENT_TITLE):
        if title in tables:
            parts += [f"## {title}", "", _markdown_table(tables[title]), ""]
    fail = tables["Failed runs"]
    parts += ["## Failed runs", ""]
    parts += [_markdown_table(fail) if len(fail) else "None.", ""]
    if summary.notes:
        parts += ["## Notes", "", *[f"- {n}" for n in summary.notes], ""]
    parts += ["All outputs of every metric are in leaderboard.csv (tidy long format).", ""]
    atomic_write_text(path, "\n".join(parts))


CSV_COLUMNS = [
    "suite",
    "scope",
    "system",
    "backbone",
    "method",
    "method_params",
    "data_recipe",
    "is_anchor",
    "seed",
    "run_id",
    "metric",
    "metric_version",
    "output",
    "is_headline",
    "higher_is_better",
    "unit",
    "mean",
    "ci_low",
    "ci_high",
    "n",
    "n_not_applicable",
    "n_item_errors",
    "delta",
    "delta_ci_low",
    "delta_ci_high",
    "n_pairs",
    "n_paired_items",
    "p_value_raw",
    "p_value_holm",
    "holm_family_size",
    "stars",
    "rank",
    "trainable_params",
    "total_params",
    "trainable_share_pct",
    "adapter_mb",
    "selected_val_loss",
]


def csv_frame(summary: Summary) -> pd.DataFrame:
    """Tidy long CSV: ``scope`` ``pooled`` rows hold the statistics, ``seed`` rows each run."""
    sys_cols = systems_cols = summary.systems[
        [
            "system",
            "label",
            "method_params",
            "data_recipe",
            "trainable_params",
            "total_params",
            "trainable_share_pct",
            "adapter_mb",
            "selected_val_loss",
        ]
    ]
    pooled = summary.table.drop(columns=["label"]).merge(systems_cols, on="system")
    pooled = pooled.assign(scope="pooled", seed="all", run_id="")
    meta = summary.table[
        ["system", "metric", "output", "metric_version", "higher_is_better", "unit", "is_anchor"]
        + ["backbone", "method"]
    ]
    seeds = summary.per_seed.merge(meta, on=["system", "metric", "output"]).merge(
        sys_cols, on="system"
    )
    seeds = seeds.assign(scope="seed")
    frame = pd.concat([pooled, seeds], ignore_index=True)
    frame["system"] = frame["label"]
    frame["suite"] = summary.suite
    frame = frame.sort_values(
        ["system", "metric", "output_index", "scope", "seed"], key=lambda s: s.astype(str)
    )
    return frame.reindex(columns=CSV_COLUMNS)


def build_leaderboard(
    results_dir: Path,
    suite: str,
    select: str = "val_loss",
    headlines: dict[str, str] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    audio: str = "folder",
    manifest: Path | str | None = None,
) -> dict[str, Path]:
    """Write ``results_dir/suite/leaderboard.{md,csv,html}`` from the suite's records.

    The page lets one listen: ``audio="folder"`` writes every system's audio (compressed, Ogg/
    Vorbis) to ``leaderboard_audio/`` beside the page (replaced whole on each build), ``"embed"``
    puts it into the page as data URIs, ``"none"`` leaves players out. ``manifest`` (the suite's
    corpus manifest, see :func:`read_eval_manifest`) adds each sentence's text, the speaker's
    prompt and the real recording.

    ``select`` names the checkpoint-selection rule whose validation loss is shown and marked in the
    plots (``val_loss`` or ``dev_score``). ``headlines`` maps metric -> headline output for records
    that do not name one (the CLI passes ``Metric.headline().name`` from the registry); without it
    a record's ``headline`` field, an output named like the metric, or its first output is used.
    Raises :class:`TTSAdaptError` on mixed metric versions or when no run has finished.
    """
    from .plots import render_html  # matplotlib only when writing

    suite_dir = Path(results_dir) / suite
    if not suite_dir.is_dir():
        known = ", ".join(list_suites(Path(results_dir))) or "none"
        raise TTSAdaptError(f"{suite_dir}: no such suite folder (suites found: {known})")
    loaded = load_results(suite_dir, headlines=headlines)
    if not len(loaded.records):
        raise TTSAdaptError(
            f"{suite_dir}: no finished runs with records (runs/<id>/DONE and records/*.json); "
            f"{len(loaded.failed_runs)} failed, {len(loaded.unfinished_runs)} unfinished. "
            f"Run the suite first: ttsadapt run SUITE.toml"
        )
    check_metric_versions(loaded)
    summary = summarise(loaded, select=select, n_resamples=n_resamples)
    paths = {
        "md": suite_dir / "leaderboard.md",
        "csv": suite_dir / "leaderboard.csv",
        "html": suite_dir / "leaderboard.html",
    }
    tables = report_tables(loaded, summary)
    items = read_eval_manifest(manifest) if manifest else None
    write_markdown(paths["md"], loaded, summary, tables)
    atomic_write_text(paths["csv"], csv_frame(summary).to_csv(index=False))
    audio_dir = suite_dir / AUDIO_FOLDER
    if audio == "folder":
        with atomic_folder(audio_dir) as tmp:
            sink = AudioSink("folder", tmp)
            view = listening_view(loaded, summary, sink, items)
        if not sink.n_files:
            shutil.rmtree(audio_dir, ignore_errors=True)
    else:
        sink = AudioSink(audio)
        view = listening_view(loaded, summary, sink, items)
        if audio == "embed" and audio_dir.is_dir():  # a folder left by an earlier build
            shutil.rmtree(audio_dir, ignore_errors=True)
    atomic_write_text(
        paths["html"],
        render_html(
            summary,
            tables=tables,
            legend=_legend(summary),
            n_runs=len(loaded.run_ids),
            listening=view,
        ),
    )
    if sink.n_files and audio == "folder":
        paths["audio"] = audio_dir
    return paths
