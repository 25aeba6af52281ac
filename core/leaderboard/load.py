"""Stage *load*: a suite's results folder read into one table of records and per-item scores.

:func:`load_results` reads every finished run (``DONE`` present) of ``<results>/<suite>/runs``:
its metric records (``records/<metric>.json`` as :class:`~ttsadapt.results.MetricRecord`, one
row per metric output), run summaries (:class:`~ttsadapt.results.RunSummary`), per-item scores
(``scores/<metric>.jsonl``) and checkpoint index (``checkpoints.json``). Failed and unfinished runs
and records that cannot be used are listed with the reason, never silently dropped. See
:mod:`ttsadapt.records` for the format.

Two things a row says beyond the record's identity. ``optimised``: the metrics the run's training
optimised (:func:`optimised_metrics`). Judges are not rewards, but a metric the training also
optimised (the same metric plugin, even with another model behind it) favours that system, so
the tables mark such cells. It is read from the record's method parameters, for any method whose
parameters have ``reward_weights`` (:mod:`ttsadapt.rewards`): each term with a positive weight is
a metric name, but for the reward's quality term, which is the metric named by
``quality_with_reference`` or ``quality_without_reference`` (both count: which one scored an item
depends on whether it had a reference recording). ``after``: where a run planned after another
run of its suite (:mod:`ttsadapt.suite`) started, as labels show it (``lora(rank=4)``); the
record's ``after`` holds the source's identity (method, version, params, its own ``after``),
which is part of the system, and a chained run optimised what its sources optimised too.
"""

from __future__ import annotations

import contextlib
import gc
import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import TTSAdaptError
from ..records import DONE_MARKER
from ..results import MetricRecord, OutputSummary, ResultsError, RunSummary
from ..rewards import QUALITY, RewardParams
from .jsonio import read_json
from .scores import UtteranceScores, load_scores
from .text import canon, params_text

__all__ = [
    "FailedRun",
    "LoadedResults",
    "check_metric_versions",
    "list_suites",
    "load_results",
    "optimised_metrics",
]


@dataclass
class FailedRun:
    """A run, or one metric record of a run, that the leaderboard cannot use, and why."""

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
        path = run_dir / "run.json"
        try:
            summary = RunSummary.from_dict(read_json(path), source=path)
        except (OSError, ValueError, ResultsError):  # unreadable: the DONE marker decides
            return None
        if summary.failed:
            return summary.first_error_line()
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
    context = _Context(headlines or {}, _suite_anchor(suite_dir))
    loaded = LoadedResults(
        suite=suite_dir.name, suite_dir=suite_dir, records=pd.DataFrame(), scores={}
    )
    rows: list[dict[str, Any]] = []
    with os.scandir(runs_dir) as it:
        run_names = sorted(e.name for e in it if e.is_dir())
    with _gc_paused():
        for run_id in run_names:
            _load_run(runs_dir / run_id, loaded, context, rows)
    loaded.records = pd.DataFrame(rows)
    return loaded


@dataclass
class _Context:
    """What every record of a suite is read with: the caller's headline outputs by metric, and
    the suite's anchor method (for records that do not say whether they are the anchor)."""

    headlines: dict[str, str]
    anchor_method: str | None


def _suite_anchor(suite_dir: Path) -> str | None:
    """The ``anchor`` of the suite file the runner copied beside the runs (None without one)."""
    try:
        with open(suite_dir / "suite.toml", "rb") as fh:
            anchor = tomllib.load(fh).get("anchor")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return anchor if isinstance(anchor, str) else None


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
    run_dir: Path, loaded: LoadedResults, context: _Context, rows: list[dict[str, Any]]
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
            loaded.checkpoints[run_id] = _normalise_checkpoints(read_json(ck))
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
                os.path.join(rec_dir, rec_name), run_id, folder, loaded, context, score_names
            )
        )


def _load_record(
    rec_path: str,
    run_id: str,
    run_dir: str,
    loaded: LoadedResults,
    context: _Context,
    score_names: set[str] | None = None,
) -> list[dict[str, Any]]:
    """One record file as rows (one per output, headline first); its scores into ``loaded``.

    A record that cannot be read or is not a metric record (see
    :class:`~ttsadapt.results.MetricRecord`) is listed as a bad record, one whose status is not
    ``ok`` as failed; either way the run's other records still load.
    """
    metric_name = os.path.splitext(os.path.basename(rec_path))[0]
    try:
        raw = read_json(rec_path)
    except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError
        loaded.failed_records.append(
            FailedRun(run_id, f"{rec_path}: not valid JSON ({exc})", "bad record", metric_name)
        )
        return []
    try:
        record = MetricRecord.from_dict(raw, source=rec_path)
    except ResultsError as exc:
        loaded.failed_records.append(FailedRun(run_id, str(exc), "bad record", metric_name))
        return []
    metric = record.metric
    if not record.ok:
        loaded.failed_records.append(
            FailedRun(
                run_id, _first_line(record.error or f"status {record.status}"), "failed", metric
            )
        )
        return []
    if not record.outputs:
        loaded.failed_records.append(
            FailedRun(run_id, f"{rec_path}: no outputs", "bad record", metric)
        )
        return []
    if record.human is not None:
        loaded.human[(run_id, metric)] = record.human
    order = record.output_order(context.headlines.get(metric))
    scores_path = os.path.join(run_dir, "scores", f"{metric}.jsonl")
    if (
        (f"{metric}.jsonl" in score_names)
        if score_names is not None
        else os.path.isfile(scores_path)
    ):
        loaded.scores[(run_id, metric)] = load_scores(scores_path, order)
    base = _system_fields(record, context)
    out_rows = []
    for index, name in enumerate(order):
        out = record.outputs[name] or _NO_OUTPUT
        low, high = out.bounds
        out_rows.append(
            {
                **base,
                "output": name,
                "output_index": index,
                "is_headline": index == 0,
                "higher_is_better": out.higher_is_better,
                "unit": out.unit or "",
                "range_low": low,
                "range_high": high,
                "record_mean": out.mean,
                "record_ci_low": out.ci_low,
                "record_ci_high": out.ci_high,
                "record_n": out.n,
            }
        )
    return out_rows


_QUALITY_FIELDS = ("quality_with_reference", "quality_without_reference")
_NO_OUTPUT = OutputSummary()  # an output given as null: nothing known about it


def _system_fields(record: MetricRecord, context: _Context) -> dict[str, Any]:
    """The columns every output row of ``record`` shares: the system it belongs to (its key is
    the canonical JSON of the identity fields), the run, the metric, sizes, where a chained run
    started (``after``) and the metrics its training optimised."""
    identity = [
        record.backbone,
        record.backbone_version,
        record.backbone_params,
        record.method,
        record.method_version,
        record.method_params,
        record.data_recipe,
    ]
    settings = record.synthesis_settings
    if settings:  # a [synthesis] setting is part of the system (records without one: unchanged)
        identity.append({"synthesis": settings})
    after = (record.model_extra or {}).get("after")
    if _after_system(after) is not None:  # a run that started from another: part of the system
        identity.append({"after": _after_system(after)})
    return {
        "synthesis": params_text(settings),
        "run_id": record.run_id,
        "system": canon(identity),
        "backbone": record.backbone,
        "backbone_params": canon(record.backbone_params),
        "method": record.method,
        "method_params": record.method_params,
        "after": _after_label(after),
        "optimised": optimised_metrics(record.method_params, after),
        "data_recipe": record.data_recipe,
        "is_anchor": record.anchor(context.anchor_method),
        "in_mean_rank": record.ranked(),
        "seed": record.seed,
        "suite_version": record.suite_version,
        "metric": record.metric,
        "metric_version": record.metric_version,
        "n_items": record.n_items,
        "n_errors": record.n_errors,
        "trainable_params": record.trainable_params,
        "total_params": record.total_params,
        "adapter_bytes": record.adapter_bytes,
    }


def _reward_metrics(params: Any) -> set[str]:
    """The metrics one method's params rewarded ({} for a method without ``reward_weights``)."""
    weights = params.get("reward_weights") if isinstance(params, dict) else None
    if not isinstance(weights, dict):
        return set()
    out: set[str] = set()
    for term, weight in weights.items():
        try:
            if not float(weight) > 0:
                continue
        except (TypeError, ValueError):
            continue
        if term != QUALITY:
            out.add(str(term))
            continue
        for name in _QUALITY_FIELDS:
            metric = params.get(name, RewardParams.model_fields[name].default)
            if metric:
                out.add(str(metric))
    return out


def optimised_metrics(method_params: Any, after: Any = None) -> tuple[str, ...]:
    """The metric names a run's training optimised, sorted: its own reward's and, for a run
    that started from another run of its suite, every source's along the chain."""
    out = _reward_metrics(method_params)
    system = after.get("system") if isinstance(after, dict) else None
    while isinstance(system, list) and len(system) >= 3:  # [method, version, params, after]
        out |= _reward_metrics(system[2])
        system = system[3] if len(system) > 3 else None
    return tuple(sorted(out))


def _after_system(after: Any) -> Any:
    """What a chained run's system identity adds (``None`` for a run that started fresh)."""
    return after.get("system") if isinstance(after, dict) else None


def _after_label(after: Any) -> str:
    """``lora(rank=4)``: the source a chained run started from, as labels show it ('' if none)."""
    return str(after.get("label") or "") if isinstance(after, dict) else ""


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
