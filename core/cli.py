"""The ``ttsadapt`` command line.

    ttsadapt plugins                         plugins with versions
    ttsadapt ls {backbones,methods,metrics,filters}
    ttsadapt validate SUITE.toml             resolve + print planned runs (exit 2 on an invalid suite)
    ttsadapt run SUITE.toml [--results DIR] [--overwrite never|only-missing|always] [--executor local]
    ttsadapt leaderboard [--results DIR] [--suite NAME]
    ttsadapt score --manifest M.jsonl --metrics a,b --out OUT.jsonl
    ttsadapt data inspect --manifest M.jsonl [--out CARD.json]

Exit codes: 0 success; 1 a run failed or a general error; 2 invalid suite/config or usage;
3 plugin error; 4 data error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__
from .errors import TTSAdaptError

DEFAULT_RESULTS = "results"

EPILOG = """exit codes: 0 ok, 1 a run failed / error, 2 invalid suite or usage, 3 plugin error,
4 data error, 130 interrupted. Plugins: -p no:NAME disables one, -p MODULE loads one,
TTSADAPT_DISABLE_PLUGIN_AUTOLOAD=1 stops loading third-party entry points."""


def _plugin_args(values: list[str]) -> tuple[list[str], list[str]]:
    disabled, extra = [], []
    for v in values:
        if v.startswith("no:"):
            disabled.append(v[3:])
        else:
            extra.append(v)
    return disabled, extra


def _registry(args: argparse.Namespace):
    from .registry import build_registry

    disabled, extra = _plugin_args(args.plugin or [])
    registry = build_registry(disabled=disabled, extra_modules=extra)
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
    registry = _registry(args)
    rows = []
    for info in registry.plugins:
        provides = [
            f"{kind}:{name}"
            for (kind, name), owner in sorted(registry.owners.items())
            if owner == info.name
        ]
        rows.append(
            [info.name, info.origin, f"{info.distribution} {info.version}", ", ".join(provides)]
        )
    print(_table(rows, ["plugin", "origin", "distribution", "provides"]))
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
            arrow = "↑" if meta["higher_is_better"] else "↓"
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
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .executors import get_executor
    from .runner import SuiteRunner
    from .suite import load_suite

    registry = _registry(args)
    suite = load_suite(args.suite, registry)
    runner = SuiteRunner(
        suite, registry, results=args.results, overwrite=args.overwrite, device=args.device
    )
    summary = runner.run(get_executor(args.executor))
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
            paths = build_leaderboard(Path(args.results), suite.name)
        except TTSAdaptError as exc:
            print(f"leaderboard not written: {exc}", file=sys.stderr)
        else:
            registry.pm.hook.ttsadapt_leaderboard_written(suite=suite.name, paths=paths)
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
        paths = build_leaderboard(results, name, select=args.select)
        registry.pm.hook.ttsadapt_leaderboard_written(suite=name, paths=paths)
        print(f"{name}: {paths['md']}  {paths['csv']}  {paths['html']}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .scoring import format_summary, score_manifest

    registry = _registry(args)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    for m in metrics:
        registry.get("metric", m)  # unknown names fail before any work, with a suggestion
    from .paths import score_cache_dir

    cache = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else score_cache_dir()
    summary = score_manifest(
        registry, Path(args.manifest), metrics, Path(args.out), cache_dir=cache
    )
    print(format_summary(summary))
    return 0


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
    p.add_argument("--executor", default="local", choices=["local"], help="where runs execute")
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
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("score", help="score existing audio listed in a manifest")
    p.add_argument("--manifest", required=True, help="JSON Lines manifest of the audio to score")
    p.add_argument("--metrics", required=True, help="comma-separated metric names, e.g. dnsmos,cer")
    p.add_argument("--out", required=True, help="per-item results (JSON Lines)")
    p.add_argument(
        "--cache-dir",
        default=None,
        help="score cache (default: $TTSADAPT_CACHE/scores or ~/.cache/ttsadapt/scores); "
        "scoring the same audio again with the same metric version and params is read from it",
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.set_defaults(func=cmd_score)

    try:
        from .data.cli import add_data_cli
    except ImportError:  # pragma: no cover - the data package is part of the distribution
        pass
    else:
        add_data_cli(sub)
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
