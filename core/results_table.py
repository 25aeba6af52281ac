"""A suite's results as data: a tidy pandas table and an lm-eval-style ``results.json``.

``load_results(PATH_OR_SUITE)`` returns one row per run x metric x output, with the run's
configuration in columns (method parameters flattened as ``param.<name>``, backbone parameters as
``backbone_param.<name>``), the record's mean, 95 % interval and counts, and the run's status;
failed and unfinished runs, and records that failed, are rows too (``status`` says which, ``error``
why, the numbers are empty), so nothing that was planned disappears from the table::

    import ttsadapt
    df = ttsadapt.load_results("quick")                        # results/quick
    ok = df[(df.status == "ok") & df.is_headline]
    ok.pivot_table(index=["method", "param.rank", "data_recipe"], columns="metric", values="mean")

``write_results_json`` writes everything a paper table needs, machine-readable, in one file:
per run its resolved configuration, per metric and output the mean, interval and n, item errors by
reason, component versions and metric parameters, and provenance (git sha, packages, device).
``ttsadapt results SUITE_OR_DIR [--out results.json] [--csv tidy.csv]`` writes it.

Runs and records are read by :func:`ttsadapt.leaderboard.load_results`, the leaderboard's own
loader: the table shows exactly the runs the leaderboard counts. The record files are read once
more for what the leaderboard does not keep (metric parameters, error reasons, provenance).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import ConfigError, TTSAdaptError
from .records import RUN_CONFIG_KEYS, atomic_write_json, atomic_write_text

if TYPE_CHECKING:  # pandas and the leaderboard are imported on use: the CLI starts fast
    import pandas as pd


def _load_suite_records(suite_dir: Path):
    """The leaderboard's loader (finished runs' records; failed and unfinished runs listed)."""
    from .leaderboard import load_results

    return load_results(suite_dir)


def _read_json(path: Path) -> Any:
    from .leaderboard.jsonio import read_json as read

    return read(path)


def list_suites(results_dir: Path) -> list[str]:
    from .leaderboard import list_suites as suites

    return suites(results_dir)


__all__ = ["RESULTS_SCHEMA", "load_results", "results_document", "write_results_json"]

RESULTS_SCHEMA = "ttsadapt.results/1"
DEFAULT_RESULTS = "results"

# the leading columns, in this order; the flattened parameters follow
COLUMNS = [
    "suite",
    "suite_version",
    "run_id",
    "backbone",
    "backbone_version",
    "method",
    "method_version",
    "data_recipe",
    "seed",
    "is_anchor",
    "metric",
    "metric_version",
    "output",
    "is_headline",
    "mean",
    "ci_low",
    "ci_high",
    "n",
    "n_items",
    "n_errors",
    "n_not_applicable",
    "higher_is_better",
    "unit",
    "status",
    "error",
    "trainable_params",
    "total_params",
    "adapter_bytes",
    "metric_params",
    "run_dir",
]


# --------------------------------------------------------------------------- locating


def suite_dirs(path_or_suite: str | Path, results: str | Path = DEFAULT_RESULTS) -> list[Path]:
    """The suite folders ``path_or_suite`` names: a suite folder (holding ``runs/``), a results
    folder holding several, a suite file (``name`` read from it, under ``results``) or a suite
    name (``results/<name>``). A :class:`ConfigError` says what was looked for."""
    path = Path(path_or_suite)
    if path.is_dir():
        if (path / "runs").is_dir():
            return [path]
        names = list_suites(path)
        if names:
            return [path / n for n in names]
        raise ConfigError(
            f"{path}: neither a suite's results folder (it has no runs/) nor a results folder "
            "holding any; expected <results>/<suite> or <results>"
        )
    if path.suffix == ".toml" and path.is_file():
        import tomllib

        try:
            name = tomllib.loads(path.read_text(encoding="utf-8")).get("name")
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{path}: field name: the suite has no name")
        folder = Path(results) / name
        if not (folder / "runs").is_dir():
            raise ConfigError(
                f"{path}: suite '{name}' has no results in {folder} yet; run `ttsadapt run {path}`"
                f" (or pass --results DIR where its results are)"
            )
        return [folder]
    folder = Path(results) / str(path_or_suite)
    if (folder / "runs").is_dir():
        return [folder]
    known = list_suites(Path(results))
    raise ConfigError(
        f"{path_or_suite}: no such suite folder, suite file or suite under {results} "
        f"(suites there: {', '.join(known) or 'none'})"
    )


# --------------------------------------------------------------------------- the tidy table


def load_results(path_or_suite: str | Path, results: str | Path = DEFAULT_RESULTS) -> pd.DataFrame:
    """One row per run x metric x output of every suite ``path_or_suite`` names (see
    :func:`suite_dirs`): columns :data:`COLUMNS`, then ``param.<name>`` for each method parameter
    and ``backbone_param.<name>`` for each backbone parameter, ``synthesis.<name>`` for each decoding
    setting of a ``[synthesis]`` sweep (nested tables as ``a.b``, lists as JSON text). Failed and unfinished runs and failed records are rows with ``status`` ``failed``,
    ``unfinished`` or ``bad record`` and their ``error``; ``mean`` etc. are empty there."""
    import pandas as pd

    frames = [_suite_frame(folder) for folder in suite_dirs(path_or_suite, results)]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    params = sorted(c for c in frame.columns if c.startswith("param."))
    backbone = sorted(c for c in frame.columns if c.startswith("backbone_param."))
    backbone += sorted(c for c in frame.columns if c.startswith("synthesis."))
    for col in COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    for col in _COUNTS:  # whole numbers stay whole where failure rows leave gaps
        with contextlib.suppress(TypeError, ValueError):
            frame[col] = frame[col].astype("Int64")
    return frame[COLUMNS + params + backbone].reset_index(drop=True)


_COUNTS = (
    "seed",
    "n",
    "n_items",
    "n_errors",
    "n_not_applicable",
    "trainable_params",
    "total_params",
    "adapter_bytes",
)


def _suite_frame(suite_dir: Path) -> pd.DataFrame:
    import pandas as pd

    loaded = _load_suite_records(suite_dir)
    runs = _RunFiles(suite_dir)
    rows: list[dict[str, Any]] = []
    for key, group in (
        loaded.records.groupby(["run_id", "metric"], sort=True) if len(loaded.records) else []
    ):
        run_id, metric = key
        record = runs.record(run_id, metric)
        run = _run_columns(runs, run_id, record)
        for out in group.sort_values("output_index").itertuples(index=False):
            raw = (record.get("outputs") or {}).get(out.output) or {}
            rows.append(
                {
                    **run,
                    "metric": metric,
                    "metric_version": out.metric_version,
                    "output": out.output,
                    "is_headline": bool(out.is_headline),
                    "mean": _float(out.record_mean),
                    "ci_low": _float(out.record_ci_low),
                    "ci_high": _float(out.record_ci_high),
                    "n": out.record_n,
                    "n_items": out.n_items,
                    "n_errors": out.n_errors,
                    "n_not_applicable": record.get("n_not_applicable"),
                    # the record's own word: None for a metric without a direction
                    "higher_is_better": raw.get("higher_is_better", out.higher_is_better),
                    "unit": out.unit,
                    "status": "ok",
                    "error": None,
                    "metric_params": _json_text(record.get("metric_params") or {}),
                }
            )
    for failed in loaded.failed_runs:
        rows.append(
            {
                **_run_columns(runs, failed.run_id, {}),
                "status": failed.status,
                "error": failed.error,
            }
        )
    for run_id in loaded.unfinished_runs:
        rows.append(
            {
                **_run_columns(runs, run_id, {}),
                "status": "unfinished",
                "error": "no DONE marker: the run was interrupted or is still running",
            }
        )
    for failed in loaded.failed_records:
        if failed.metric is None:  # an unreadable checkpoints.json: the records still count
            continue
        rows.append(
            {
                **_run_columns(runs, failed.run_id, runs.record(failed.run_id, failed.metric)),
                "metric": failed.metric,
                "status": failed.status,
                "error": failed.error,
            }
        )
    return pd.DataFrame(rows)


def _run_columns(runs: _RunFiles, run_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """The run's configuration columns, from its record, else its ``config.json``."""
    config = {**runs.config(run_id), **{k: v for k, v in record.items() if v is not None}}
    row = {
        "suite": config.get("suite") or runs.suite,
        "suite_version": config.get("suite_version"),
        "run_id": run_id,
        "backbone": config.get("backbone"),
        "backbone_version": config.get("backbone_version"),
        "method": config.get("method"),
        "method_version": config.get("method_version"),
        "data_recipe": config.get("data_recipe"),
        "seed": config.get("seed"),
        "is_anchor": config.get("is_anchor"),
        "trainable_params": config.get("trainable_params"),
        "total_params": config.get("total_params"),
        "adapter_bytes": config.get("adapter_bytes"),
        "run_dir": str(runs.runs_dir / run_id),
    }
    adapt = runs.summary(run_id).get("adapt") or {}
    for key in ("trainable_params", "total_params", "adapter_bytes"):
        if row[key] is None:
            row[key] = adapt.get(key)
    row.update(_flatten(config.get("method_params") or {}, "param."))
    row.update(_flatten(config.get("backbone_params") or {}, "backbone_param."))
    row.update(_flatten(config.get("synthesis_settings") or {}, "synthesis."))
    return row


def _flatten(params: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, (list, tuple, dict)):
            out[f"{prefix}{key}"] = _json_text(value)  # hashable: groupby and pivot work
        else:
            out[f"{prefix}{key}"] = value
    return out


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _float(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class _RunFiles:
    """Cached reads of a suite's run files (a missing or unreadable file reads as ``{}``)."""

    def __init__(self, suite_dir: Path) -> None:
        self.suite_dir = Path(suite_dir)
        self.suite = self.suite_dir.name
        self.runs_dir = self.suite_dir / "runs"
        self._cache: dict[Path, dict[str, Any]] = {}

    def _read(self, path: Path) -> dict[str, Any]:
        if path not in self._cache:
            try:
                data = _read_json(path)
            except (OSError, ValueError):
                data = {}
            self._cache[path] = data if isinstance(data, dict) else {}
        return self._cache[path]

    def config(self, run_id: str) -> dict[str, Any]:
        return self._read(self.runs_dir / run_id / "config.json")

    def summary(self, run_id: str) -> dict[str, Any]:
        return self._read(self.runs_dir / run_id / "run.json")

    def record(self, run_id: str, metric: str) -> dict[str, Any]:
        return self._read(self.runs_dir / run_id / "records" / f"{metric}.json")


# --------------------------------------------------------------------------- results.json


def results_document(suite_dir: Path) -> dict[str, Any]:
    """The lm-eval-style document of one suite (what :func:`write_results_json` writes).

    ``results``: run id -> metric -> {``outputs``: output -> mean, ci_low, ci_high, n,
    higher_is_better, unit; headline, n_items, n_errors, n_not_applicable, errors by reason};
    ``configs``: run id -> the resolved run configuration (``config.json``); ``runs``: run id ->
    status, error, timings, adaptation summary, data counts, provenance; ``versions``: the
    components' versions; ``metrics``: per metric its version, parameters and the packages and
    weight-file hashes of its models; ``provenance``: who wrote this file and from which commits.
    """
    suite_dir = Path(suite_dir)
    loaded = _load_suite_records(suite_dir)
    files = _RunFiles(suite_dir)
    status: dict[str, dict[str, Any]] = {}
    for run_id in loaded.run_ids:
        status[run_id] = {"status": "ok", "error": None}
    for failed in loaded.failed_runs:
        status[failed.run_id] = {"status": failed.status, "error": failed.error}
    for run_id in loaded.unfinished_runs:
        status[run_id] = {"status": "unfinished", "error": "no DONE marker"}
    for failed in loaded.failed_records:  # a finished run with no readable record at all
        status.setdefault(failed.run_id, {"status": "ok", "error": None})

    results, metrics = _metric_results(loaded, files)
    versions: dict[str, dict[str, str]] = {"backbones": {}, "methods": {}, "metrics": {}}
    failed_records = [
        {"run_id": f.run_id, "metric": f.metric, "status": f.status, "error": f.error}
        for f in loaded.failed_records
    ]

    configs: dict[str, dict[str, Any]] = {}
    runs: dict[str, dict[str, Any]] = {}
    shas: set[str] = set()
    suite_version = None
    for run_id in sorted(status):
        config = files.config(run_id)
        if not config:  # an old run without config.json: its first record knows the config
            record = next((files.record(run_id, m) for m in results.get(run_id, {})), {})
            config = {k: record.get(k) for k in _CONFIG_KEYS if k in record}
        configs[run_id] = config
        suite_version = suite_version or config.get("suite_version")
        summary = files.summary(run_id)
        prov = summary.get("provenance") or {}
        if prov.get("git_sha"):
            shas.add(str(prov["git_sha"]))
        runs[run_id] = {
            **status[run_id],
            "started_at": summary.get("started_at"),
            "finished_at": summary.get("finished_at"),
            "timings": summary.get("timings") or {},
            "adapt": summary.get("adapt") or {},
            "data": summary.get("data") or {},
            "provenance": prov,
        }
        for kind, name_key, version_key in (
            ("backbones", "backbone", "backbone_version"),
            ("methods", "method", "method_version"),
        ):
            if config.get(name_key):
                versions[kind][config[name_key]] = str(config.get(version_key))
    for metric, entry in metrics.items():
        versions["metrics"][metric] = entry["version"]
    counts: dict[str, int] = {}
    for info in status.values():
        counts[info["status"]] = counts.get(info["status"], 0) + 1
    return {
        "schema": RESULTS_SCHEMA,
        "suite": loaded.suite,
        "suite_version": suite_version,
        "n_runs": len(status),
        "runs_by_status": counts,
        "results": results,
        "configs": configs,
        "runs": runs,
        "metrics": metrics,
        "versions": versions,
        "failed_records": failed_records,
        "provenance": {
            "written_by": f"ttsadapt {__version__}",
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "git_shas": sorted(shas),
            "results_dir": str(suite_dir.resolve()),
        },
    }


def _metric_results(
    loaded: Any, files: _RunFiles
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``results`` (run id -> metric -> outputs and counts) and ``metrics`` (metric -> version,
    parameters, provenance; ``other_params`` where a run scored it with other parameters)."""
    results: dict[str, dict[str, Any]] = {}
    metrics: dict[str, dict[str, Any]] = {}
    if not len(loaded.records):
        return results, metrics
    for (run_id, metric), group in loaded.records.groupby(["run_id", "metric"], sort=True):
        record = files.record(run_id, metric)
        outputs = {}
        for out in group.sort_values("output_index").itertuples(index=False):
            raw = (record.get("outputs") or {}).get(out.output) or {}
            outputs[out.output] = {
                "mean": _float(out.record_mean),
                "ci_low": _float(out.record_ci_low),
                "ci_high": _float(out.record_ci_high),
                "n": out.record_n,
                "higher_is_better": raw.get("higher_is_better", out.higher_is_better),
                "unit": out.unit,
                "range": raw.get("range"),
            }
        results.setdefault(run_id, {})[metric] = {
            "headline": group.loc[group["is_headline"], "output"].iloc[0],
            "outputs": outputs,
            "n_items": record.get("n_items"),
            "n_errors": record.get("n_errors"),
            "n_not_applicable": record.get("n_not_applicable"),
            "errors": record.get("errors") or {},
        }
        entry = metrics.setdefault(
            metric,
            {
                "version": str(record.get("metric_version")),
                "params": record.get("metric_params") or {},
                "provenance": record.get("metric_provenance") or {},
            },
        )
        if (record.get("metric_params") or {}) != entry["params"]:
            entry.setdefault("other_params", {})[run_id] = record.get("metric_params")
    return results, metrics


_CONFIG_KEYS = RUN_CONFIG_KEYS


def write_results_json(suite_dir: Path, out: Path | None = None) -> Path:
    """Write :func:`results_document` to ``out`` (default ``<suite_dir>/results.json``)."""
    suite_dir = Path(suite_dir)
    out = Path(out) if out is not None else suite_dir / "results.json"
    atomic_write_json(out, _finite(results_document(suite_dir)))
    return out


def _finite(obj: Any) -> Any:
    """NaN and infinities as null: ``results.json`` is strict JSON that every parser reads."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_tidy_csv(frame: pd.DataFrame, out: Path) -> Path:
    atomic_write_text(Path(out), frame.to_csv(index=False))
    return Path(out)


# --------------------------------------------------------------------------- command line


def cmd_results(args: argparse.Namespace) -> int:
    folders = suite_dirs(args.target, args.results)
    if args.out and len(folders) > 1:
        raise ConfigError(
            f"--out {args.out}: {args.target} holds {len(folders)} suites "
            f"({', '.join(f.name for f in folders)}); name one suite, or drop --out to write "
            "each suite's results.json into its own folder"
        )
    for folder in folders:
        path = write_results_json(folder, Path(args.out) if args.out else None)
        doc = json.loads(path.read_text(encoding="utf-8"))
        counts = ", ".join(f"{n} {s}" for s, n in sorted(doc["runs_by_status"].items()))
        print(f"{doc['suite']}: {doc['n_runs']} runs ({counts or 'none'}) -> {path}")
    if args.csv:
        frame = load_results(args.target, args.results)
        if frame.empty:
            raise TTSAdaptError(f"{args.target}: no runs to write to {args.csv}")
        print(f"tidy table ({len(frame)} rows) -> {write_tidy_csv(frame, Path(args.csv))}")
    return 0


def add_results_cli(sub: Any) -> None:
    """Register ``ttsadapt results`` on the CLI's subparsers."""
    p = sub.add_parser(
        "results",
        help="write a suite's results.json (configs, means/CIs/n, versions, provenance)",
        description="Write results.json for a suite: per run its resolved config, per metric and "
        "output the mean, 95%% CI and n, item errors by reason, component versions, metric "
        "parameters and provenance; --csv also writes the tidy table of ttsadapt.load_results "
        "(one row per run x metric x output).",
    )
    p.add_argument(
        "target",
        metavar="SUITE_OR_DIR",
        help="a suite name (under --results), suite file, suite results folder or results folder",
    )
    p.add_argument("--results", default=DEFAULT_RESULTS, help="results folder (default: results)")
    p.add_argument("--out", default=None, help="where to write (default: <suite>/results.json)")
    p.add_argument("--csv", default=None, help="also write the tidy table as CSV here")
    p.set_defaults(func=cmd_results)
