"""The ``ttsadapt`` command line.

    ttsadapt plugins                         plugins with versions
    ttsadapt ls {backbones,methods,metrics,filters}
    ttsadapt validate SUITE.toml             resolve + print planned runs (exit 2 on an invalid suite)
    ttsadapt run SUITE.toml [--results DIR] [--overwrite never|only-missing|always]
                 [--executor local|ray] [--ray-address ADDR] [--only RUN_ID]
    ttsadapt leaderboard [--results DIR] [--suite NAME]
    ttsadapt score --manifest M.jsonl --metrics a,b --out OUT.jsonl [--metric-params NAME.KEY=VALUE]
    ttsadapt data inspect --manifest M.jsonl [--out CARD.json]
    ttsadapt speak --backbone NAME [--param K=V] [--adapter RUN_DIR] (--text T --out F.wav | --manifest M --out DIR)

Exit codes: 0 success; 1 a run failed or a general error; 2 invalid suite/config or usage;
3 plugin error; 4 data error; 5 checkpoint/adapter error; 6 training diverged; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .errors import TTSAdaptError

DEFAULT_RESULTS = "results"

EPILOG = """exit codes: 0 ok, 1 a run failed / error, 2 invalid suite or usage, 3 plugin error,
4 data error, 5 checkpoint/adapter error, 6 training diverged, 130 interrupted. Plugins: -p no:NAME disables one, -p MODULE loads one,
TTSADAPT_DISABLE_PLUGIN_AUTOLOAD=1 stops loading third-party entry points."""


def _plugin_args(values: list[str]) -> tuple[list[str], list[str]]:
    disabled, extra = [], []
    for v in values:
        if v.startswith("no:"):
            disabled.append(v[3:])
        else:
            extra.append(v)
    return disabled, extra


def _registry(args: argparse.Namespace, tolerate_broken: bool = False):
    from .registry import build_registry

    disabled, extra = _plugin_args(args.plugin or [])
    registry = build_registry(
        disabled=disabled, extra_modules=extra, tolerate_broken=tolerate_broken
    )
    registry.pm.hook.ttsadapt_configure.call_historic(
        kwargs={
            "config": {
                "results": getattr(args, "results", None),
                "disabled": disabled,
                "argv": sys.argv[1:],
            }
        }
    )
    return registry


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


# --------------------------------------------------------------------------- commands


def cmd_plugins(args: argparse.Namespace) -> int:
    """Every plugin with what it provides; a plugin that fails to import or register is listed as
    BROKEN with its error (the others still listed, exit 3), disabled ones as disabled."""
    registry = _registry(args, tolerate_broken=True)
    rows = []
    for info in registry.plugins:
        provides = [
            f"{kind}:{name}"
            for (kind, name), owner in sorted(registry.owners.items())
            if owner == info.name
        ]
        shown = f"BROKEN: {info.error}" if info.broken else ", ".join(provides)
        rows.append([info.name, info.origin, f"{info.distribution} {info.version}", shown])
    for name, source in sorted(getattr(registry.pm, "ttsadapt_disabled", {}).items()):
        rows.append([name, source.origin, "-", f"disabled by -p no:{name} ({source.source})"])
    print(_table(rows, ["plugin", "origin", "distribution", "provides"]))
    broken = registry.broken_plugins()
    if broken:
        print(
            f"{len(broken)} plugin{'s' if len(broken) > 1 else ''} could not be loaded "
            f"({', '.join(b.name for b in broken)}); other commands stop with this error until "
            f"each is fixed, uninstalled or disabled with -p no:NAME",
            file=sys.stderr,
        )
        return 3
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    registry = _registry(args)
    kind = args.kind.rstrip("s")
    rows = []
    for name in registry.names(kind):
        cls = registry.get(kind, name)
        meta = cls.metadata()
        detail = ""
        if kind == "metric":
            head = meta["outputs"][0] if meta["outputs"] else {}
            from .components import direction_arrow

            arrow = direction_arrow(meta["higher_is_better"])
            needs = [n for n in ("text", "reference_audio", "speaker_prompt") if meta[f"needs_{n}"]]
            detail = (
                f"{arrow} {head.get('name', '')} range {meta['range']}"
                f"{' needs ' + '+'.join(needs) if needs else ''}"
            )
        elif kind == "method":
            detail = "trains" if cls.trains else "no training (anchor)"
        elif kind == "backbone":
            detail = f"{cls.sample_rate} Hz"
        elif kind == "filter":
            detail = f"{cls.level}-level"
        rows.append(
            [name, meta["version"], registry.owner(kind, name), detail, meta["description"][:70]]
        )
    if args.json:
        print(
            json.dumps(
                [registry.get(kind, n).metadata() for n in registry.names(kind)],
                indent=2,
                default=str,
            )
        )
    else:
        print(_table(rows, [kind, "version", "plugin", "", "description"]))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .suite import load_suite

    registry = _registry(args)
    suite = load_suite(args.suite, registry)
    print(f"suite {suite.name} v{suite.spec.version}: {len(suite.runs)} planned runs")
    rows = [[r.run_id, r.label()] for r in suite.runs]
    print(_table(rows, ["run id", "backbone · method · data · seed"]))
    print(
        f"metrics: {', '.join(m['name'] for m in suite.runs[0].metrics)}; anchor: {suite.spec.anchor}"
    )
    print()
    print("resolved parameters (defaults filled in):")
    for line in _resolved_params_lines(suite, registry):
        print(line)
    return 0


def _resolved_params_lines(suite, registry) -> list[str]:
    """Each distinct component configuration of the suite with every parameter resolved:
    ``backbone voxcpm2 v1: model='tiny', ...``; a swept method appears once per value."""
    seen: dict[tuple[str, str, str], None] = {}
    lines = []

    def add(kind: str, name: str, version: str, params: dict) -> None:
        key = (kind, name, json.dumps(params, sort_keys=True, default=str))
        if key in seen:
            return
        seen[key] = None
        shown = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in sorted(params.items()))
        lines.append(f"  {kind} {name} v{version}: {shown or '(no parameters)'}")

    for run in suite.runs:
        add("backbone", run.backbone, run.backbone_version, run.backbone_params)
    for run in suite.runs:
        add("method", run.method, run.method_version, run.method_params)
    for run in suite.runs:
        for f in (run.recipe or {}).get("filters") or []:
            if isinstance(f, dict) and "name" in f:
                cls = registry.get("filter", f["name"])
                raw = {k: v for k, v in f.items() if k != "name"}
                add("filter", cls.name, cls.version, cls.resolve_params(raw))
    for m in suite.runs[0].metrics:
        add("metric", m["name"], str(m.get("version", "?")), m.get("params") or {})
    return lines


def cmd_run(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .executors import Executor, LocalExecutor, RayExecutor
    from .runner import SuiteRunner
    from .store import follower_rank
    from .suite import load_suite

    registry = _registry(args)
    suite = load_suite(args.suite, registry)
    if args.only:
        known = {r.run_id for r in suite.runs}
        unknown = [r for r in args.only if r not in known]
        if unknown:
            raise ConfigError(
                f"--only {unknown[0]}: not a run of suite {suite.name} "
                f"(ttsadapt validate {args.suite} lists them)"
            )
        suite.runs = [r for r in suite.runs if r.run_id in set(args.only)]
    runner = SuiteRunner(
        suite, registry, results=args.results, overwrite=args.overwrite, device=args.device
    )
    executor: Executor
    if args.executor == "ray":
        executor = RayExecutor(
            runner,
            address=args.ray_address,
            num_cpus=args.ray_num_cpus,
            max_retries=args.max_retries,
            device=args.device,
            plugins=_plugin_args(args.plugin or []),
        )
    else:
        executor = LocalExecutor()
    summary = runner.run(executor)
    if follower_rank():  # a non-zero rank of a multi-process launch: rank 0 reports
        return 0
    counts = summary.counts()
    print(
        f"suite {suite.name}: "
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        + f" ({len(suite.runs)} planned)"
    )
    for o in summary.outcomes:
        if o.status in ("failed", "locked"):
            print(f"  {o.status}: {o.run_id} ({o.label}): {(o.error or '').splitlines()[0]}")
            if o.status == "failed":
                print(f"    traceback: {runner.store.run_dir(o.run_id) / 'traceback.txt'}")
    if not args.no_leaderboard:
        from .leaderboard import build_leaderboard

        try:
            paths = build_leaderboard(Path(args.results), suite.name, plugins=registry.pm)
        except TTSAdaptError as exc:
            print(f"leaderboard not written: {exc}", file=sys.stderr)
        else:
            print(f"leaderboard: {paths['md']}")
            print(f"             {paths['html']}")
    return 1 if counts.get("failed") else 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .leaderboard import build_leaderboard, list_suites

    registry = _registry(args)
    results = Path(args.results)
    suites = [args.suite] if args.suite else list_suites(results)
    if not suites:
        raise TTSAdaptError(
            f"no suites with results under {results}; run `ttsadapt run SUITE` first"
        )
    for name in suites:
        paths = build_leaderboard(
            results,
            name,
            select=args.select,
            audio=args.audio,
            manifest=args.manifest,
            plugins=registry.pm,
        )
        print(f"{name}: {paths['md']}  {paths['csv']}  {paths['html']}")
        if "audio" in paths:
            print(f"{name}: audio in {paths['audio']} (keep it beside the page)")
    return 0


def _metric_param(value: str) -> tuple[str, str, str]:
    """argparse type of ``--metric-params``: ``NAME.KEY=VALUE`` -> ``(name, key, raw value)``."""
    target, eq, raw = value.partition("=")
    name, dot, key = target.partition(".")
    if not eq or not dot or not name.strip() or not key.strip():
        raise argparse.ArgumentTypeError(
            f"expected NAME.KEY=VALUE (a metric, one of its parameters and a value, e.g. "
            f"cer.model=tiny.en), got {value!r}"
        )
    return name.strip(), key.strip(), raw


def _metric_params(
    registry, specs: list[tuple[str, str, str]], metric_names: list[str]
) -> dict[str, dict[str, object]]:
    """``{metric: {key: value}}`` from ``--metric-params``, each value checked by the metric's
    ``Params``: the raw string first (pydantic reads numbers and true/false from it), then the
    string as JSON (lists, objects). A :class:`ConfigError` (exit 2) names the flag, the metric
    and the key."""
    import difflib

    from pydantic import ValidationError

    from .errors import ConfigError

    out: dict[str, dict[str, object]] = {}
    for name, key, raw in specs:
        flag = f"--metric-params {name}.{key}={raw}"
        try:
            cls = registry.get("metric", name)
        except ConfigError as exc:
            raise ConfigError(f"{flag}: {exc}") from None
        if name not in metric_names:
            raise ConfigError(
                f"{flag}: metric {name!r} is not among --metrics ({', '.join(metric_names)}); "
                "add it there or drop the parameter"
            )
        fields = list(cls.Params.model_fields)
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            raise ConfigError(
                f"{flag}: metric {name} has no parameter {key!r}"
                + (f"; did you mean {close[0]!r}?" if close else "")
                + f" (parameters of {name}: {', '.join(fields) or 'none'})"
            )
        if key in out.get(name, {}):
            raise ConfigError(f"{flag}: {name}.{key} is given twice")
        candidates: list[object] = [raw]
        try:
            decoded = json.loads(raw)
        except ValueError:
            pass
        else:
            if not isinstance(decoded, str):
                candidates.append(decoded)
        problem = None
        for value in candidates:
            try:
                cls.Params.model_validate({key: value})
            except ValidationError as exc:
                mine = [e for e in exc.errors() if tuple(e["loc"][:1]) == (key,)]
                if mine:
                    problem = problem or mine[0]["msg"]
                    continue
            out.setdefault(name, {})[key] = value
            break
        else:
            raise ConfigError(f"{flag}: metric {name}, parameter {key}: {problem} (got {raw!r})")
    return out


def _score_epilog() -> str:
    """The manifest keys of ``ttsadapt score`` (from :data:`ttsadapt.scoring.SCORE_MANIFEST_KEYS`,
    imported only when the help is shown)."""
    import textwrap

    from .data.manifest import DEPRECATED_KEYS
    from .scoring import SCORE_KEY_ALIASES, SCORE_MANIFEST_KEYS

    width = max(len(k) for k in SCORE_MANIFEST_KEYS) + 2
    lines = [
        "manifest: JSON Lines, one item a line, paths relative to the manifest's folder, e.g.",
        '  {"audio": "out/0001.wav", "text": "Hello there.", "language": "en",',
        '   "speaker_prompt": "prompts/spk1.wav", "reference_audio": "recorded/0001.wav"}',
        "",
        f"{'key':<{width}}{'needed by':<20}meaning",
    ]
    for key, (meaning, _flag, needed_by) in SCORE_MANIFEST_KEYS.items():
        wrapped = textwrap.wrap(meaning, 96 - width - 20)
        lines.append(f"{key:<{width}}{needed_by or '-':<20}{wrapped[0]}")
        lines += [" " * (width + 20) + w for w in wrapped[1:]]
    lines += [
        "",
        "Metrics from plugins: `ttsadapt ls metrics` shows what each needs (text,",
        "speaker_prompt, reference_audio). An item lacking a key a metric needs gets an error",
        'row naming the key ("missing text: line 3 of m.jsonl has no "text" ..."); an item',
        "without reference_audio counts as not applicable. Corpus manifests (`ttsadapt data`,",
        "suites) use the same key names. Old spellings are still read, with a warning naming",
        "the file, the line and the new key:",
        *(f'  "{o}" here is "{n}"' for o, n in SCORE_KEY_ALIASES.items()),
        *(f'  "{o}" in corpus manifests is "{n}"' for o, n in DEPRECATED_KEYS.items()),
        "",
        "metric parameters: --metric-params NAME.KEY=VALUE (repeatable), e.g.",
        "  --metric-params cer.model=tiny.en --metric-params pesq.mode=nb",
        "VALUE is read as the parameter's type (numbers, true/false; JSON for lists). Each",
        "metric's parameters and defaults: ttsadapt ls metrics --json.",
    ]
    return "\n".join(lines)


def cmd_score(args: argparse.Namespace) -> int:
    from .scoring import format_summary, score_manifest

    registry = _registry(args)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    for m in metrics:
        registry.get("metric", m)  # unknown names fail before any work, with a suggestion
    params = _metric_params(registry, args.metric_params or [], metrics)
    from .paths import score_cache_dir

    cache = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else score_cache_dir()
    summary = score_manifest(
        registry,
        Path(args.manifest),
        metrics,
        Path(args.out),
        cache_dir=cache,
        metric_params=params,
    )
    print(format_summary(summary))
    failed = _metrics_failed_everywhere(summary)
    for line in failed:
        print(f"error: {line}", file=sys.stderr)
    return 1 if failed else 0


def _metrics_failed_everywhere(summary: dict[str, Any]) -> list[str]:
    """One line per metric that scored no item because every item it tried failed (items that
    were only "not applicable", e.g. PESQ without a reference recording, do not count as tried):
    the metric, how many items, and the most common reason."""
    lines = []
    for name, m in summary["metrics"].items():
        if m["n_ok"] or not m["n_errors"]:
            continue
        reason, count = max(m["errors"].items(), key=lambda kv: kv[1])
        lines.append(
            f"metric {name} failed on every item it scored ({m['n_errors']} of "
            f"{summary['n_items']}); most common reason: {reason} ({count} item"
            f"{'s' if count != 1 else ''}); the rows in the output name each item's reason"
        )
    return lines


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ttsadapt",
        description="Benchmark adaptation of text-to-speech models: run suites, score audio, "
        "build leaderboards.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ttsadapt {__version__}")
    parser.add_argument(
        "-p",
        dest="plugin",
        action="append",
        metavar="NAME",
        help="load plugin module NAME, or disable plugin NAME with no:NAME (repeatable)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list plugins with versions and what they provide")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("ls", help="list registered components of one kind with their metadata")
    p.add_argument("kind", choices=["backbones", "methods", "metrics", "filters"])
    p.add_argument("--json", action="store_true", help="print full metadata as JSON")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser(
        "validate",
        help="check a suite and print its planned runs (exit 2 naming the field if invalid)",
    )
    p.add_argument("suite", help="suite file, e.g. benchmarks/quick.toml")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "run",
        help="run a suite: adapt, synthesise the evaluation set, score, write records",
        description="Run every planned run of SUITE. Finished runs are skipped, failed or "
        "half-written ones are redone, so re-running after a crash or kill resumes.",
    )
    p.add_argument("suite", help="suite file, e.g. benchmarks/quick.toml")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="results folder (default: results)")
    p.add_argument(
        "--overwrite",
        choices=["never", "only-missing", "always"],
        default="only-missing",
        help="never: leave finished runs alone; only-missing (default): also score metrics a "
        "finished run lacks; always: redo every run",
    )
    p.add_argument(
        "--executor",
        default="local",
        choices=["local", "ray"],
        help="where runs execute: local (in this process, one after another) or ray (each run "
        "a Ray task with its backbone's resources; see README 'Running on a cluster')",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="Ray cluster to connect to (default: $RAY_ADDRESS, else start a local one)",
    )
    p.add_argument(
        "--ray-num-cpus",
        type=int,
        default=None,
        metavar="N",
        help="CPUs of the local Ray cluster started without an address (default: all)",
    )
    p.add_argument(
        "--max-retries",
        type=int,
        default=2,
        metavar="N",
        help="ray: retry a run whose worker died N times, then record it failed (default 2)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="RUN_ID",
        help="only this run of the suite (repeatable); e.g. one run under torchrun",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: the suite's)")
    p.add_argument("--no-leaderboard", action="store_true", help="do not build the leaderboard")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("leaderboard", help="build leaderboard.{md,csv,html} from records")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="results folder (default: results)")
    p.add_argument("--suite", default=None, help="suite name (default: every suite found)")
    p.add_argument(
        "--select",
        choices=["val_loss", "dev_metric"],
        default="val_loss",
        help="checkpoint choice to show where runs kept both",
    )
    audio = p.add_mutually_exclusive_group()
    audio.add_argument(
        "--embed-audio",
        dest="audio",
        action="store_const",
        const="embed",
        default="folder",
        help="put the audio into the page (data URIs) instead of leaderboard_audio/ beside it",
    )
    audio.add_argument(
        "--no-audio", dest="audio", action="store_const", const="none", help="no players"
    )
    p.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help="the suite's corpus manifest: each sentence's text, prompt and real recording",
    )
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser(
        "score",
        help="score existing audio listed in a manifest",
        description="Score the audio a manifest lists with the given metrics; write one JSON line\n"
        "per item (values, or the reason an item could not be scored) and print a summary.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--manifest",
        required=True,
        help="JSON Lines manifest of the audio to score (its keys are listed below)",
    )
    p.add_argument("--metrics", required=True, help="comma-separated metric names, e.g. dnsmos,cer")
    p.add_argument("--out", required=True, help="per-item results (JSON Lines)")
    p.add_argument(
        "--metric-params",
        action="append",
        type=_metric_param,
        metavar="NAME.KEY=VALUE",
        help="set parameter KEY of metric NAME, e.g. cer.model=tiny.en (repeatable)",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="score cache (default: $TTSADAPT_CACHE/scores or ~/.cache/ttsadapt/scores); "
        "scoring the same audio again with the same metric version and params is read from it",
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.set_defaults(func=cmd_score)
    plain_help = p.format_help

    def score_help(p: argparse.ArgumentParser = p) -> str:
        p.epilog = _score_epilog()  # imports the scoring module only when the help is shown
        return plain_help()

    p.format_help = score_help  # type: ignore[method-assign]

    try:
        from .data.cli import add_data_cli
    except ImportError:  # pragma: no cover - the data package is part of the distribution
        pass
    else:
        add_data_cli(sub)
    from .speak import add_speak_cli

    add_speak_cli(sub)
    from .export import add_export_cli
    from .results_table import add_results_cli

    add_results_cli(sub)
    add_export_cli(sub)
    from .listen_cli import add_listen_cli

    add_listen_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except TTSAdaptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
