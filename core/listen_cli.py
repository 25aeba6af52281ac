"""``ttsadapt listen export|import`` and the leaderboard's audio options.

Registered from :func:`ttsadapt.cli.build_parser` by :func:`add_listen_cli`. Besides the
``listen`` command it gives ``ttsadapt leaderboard`` its listening options (``--embed-audio``,
``--no-audio``, ``--manifest``), since the page's audio is built by the same code.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

DEFAULT_RESULTS = "results"

LISTEN_EPILOG = """\
examples:
  ttsadapt listen export --suite quick --items 20 --raters 5 --out listening/quick-mos
  ttsadapt listen export --suite quick --kind ab --systems zero_shot "rank=16" --out ab-test
  ttsadapt listen import ratings/*.json --suite quick
  ttsadapt leaderboard --suite quick        # MOS appears beside the automatic metrics
"""


def add_listen_cli(sub: Any) -> None:
    p = sub.add_parser(
        "listen",
        help="listening tests: export a blinded test page, import the ratings as records",
        description="Export a self-contained listening test (MOS, A/B or MUSHRA) for a suite's "
        "systems, and import the raters' files as a human metric the leaderboard shows.",
        epilog=LISTEN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lsub = p.add_subparsers(dest="listen_command", metavar="{export,import}")
    e = lsub.add_parser(
        "export",
        help="write a test page (one folder, opens offline) and keep its key with the results",
        description="Write OUT/index.html + OUT/audio/: per rater a random, blinded order, hidden "
        "anchors (the real recording where the corpus has one; a degraded low anchor) and "
        "attention checks. The key stays in RESULTS/SUITE/listening/TEST_ID/key.json.",
    )
    e.add_argument("--suite", required=True, help="suite name (a folder under --results)")
    e.add_argument("--results", default=DEFAULT_RESULTS, help="results folder (default: results)")
    e.add_argument(
        "--systems",
        nargs="+",
        default=None,
        metavar="SYSTEM",
        help="systems to rate: labels as on the leaderboard, run ids, or a unique part of a "
        "label (default: every system)",
    )
    e.add_argument("--items", type=int, default=20, help="sentences to rate (default 20)")
    e.add_argument("--kind", choices=["mos", "ab", "mushra"], default="mos", help="test kind")
    e.add_argument("--raters", type=int, default=5, help="rater codes r1..rK to make (default 5)")
    e.add_argument("--checks", type=int, default=2, help="attention checks per rater (default 2)")
    e.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help="the suite's corpus manifest: real recordings become the hidden upper anchor",
    )
    e.add_argument("--seed", type=int, default=None, help="random seed (default: fresh)")
    e.add_argument("--out", type=Path, required=True, help="folder to write (replaced)")
    e.set_defaults(func=cmd_listen_export)
    i = lsub.add_parser(
        "import",
        help="turn raters' files into records (MOS / preference) with rater screening",
        description="Read the ratings files of one test, screen raters by the hidden anchors and "
        "attention checks, and write scores/ and records/ for every rated run.",
    )
    i.add_argument("ratings", nargs="+", type=Path, help="ratings files (JSON) the page saved")
    i.add_argument("--suite", required=True, help="suite name")
    i.add_argument("--results", default=DEFAULT_RESULTS, help="results folder (default: results)")
    i.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    i.set_defaults(func=cmd_listen_import)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def cmd_listen_export(args: argparse.Namespace) -> int:
    from .listen import export_test

    t0 = time.perf_counter()
    res = export_test(
        args.results,
        args.suite,
        args.out,
        systems=args.systems,
        n_items=args.items,
        kind=args.kind,
        n_raters=args.raters,
        manifest=args.manifest,
        n_checks=args.checks,
        seed=args.seed,
    )
    took = time.perf_counter() - t0
    print(
        f"test {res.test_id} ({res.kind}): {len(res.systems)} systems × {len(res.items)} "
        f"sentences, {res.n_stimuli} stimuli, {res.n_trials_per_rater} trials per rater"
    )
    for label in res.systems:
        print(f"  system: {label}")
    anchors = (
        "real recording (upper) and degraded (low)"
        if res.has_upper_anchor
        else ("degraded low anchor only (give --manifest for real recordings)")
    )
    print(f"  hidden anchors: {anchors}")
    print(
        f"  page {res.page_bytes / 1e3:.0f} kB + audio {res.audio_bytes / 1e6:.2f} MB in "
        f"{res.out_dir} ({took:.1f} s)"
    )
    print(f"  key: {res.key_path} (keep it; do not send it to raters)")
    print(
        "  send each rater the folder and their code: "
        + ", ".join(f"{r} -> index.html#{r}" for r in res.raters)
    )
    for note in res.notes:
        print(f"  note: {note}")
    return 0


def _num(x: Any, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def cmd_listen_import(args: argparse.Namespace) -> int:
    from .listen import EXCLUSION_RULE, import_ratings

    t0 = time.perf_counter()
    res = import_ratings(args.ratings, args.results, args.suite, seed=args.seed)
    took = time.perf_counter() - t0
    print(
        f"test {res.test_id} ({res.kind}) -> metric '{res.metric}': {res.n_kept} of "
        f"{len(res.raters)} raters kept ({took:.1f} s)"
    )
    for r in res.raters:
        status = "EXCLUDED: " + "; ".join(r.reasons) if r.excluded else "kept"
        print(
            f"  {r.rater}: {r.n_answered}/{r.n_trials} answered, checks {r.checks_passed}/"
            f"{r.n_checks}, low anchor {_num(r.low_mean)}, real recording {_num(r.upper_mean)}"
            f" — {status}"
        )
    print(
        f"  Krippendorff's alpha (interval): {_num(res.alpha, 3)} kept raters, "
        f"{_num(res.alpha_all, 3)} all raters"
    )
    for label, s in res.systems.items():
        print(
            f"  {label}: {_num(s['mean'])} [{_num(s['ci_low'])}, {_num(s['ci_high'])}] "
            f"over {s['n_items']} sentences"
        )
    if any(v is not None for v in res.anchors.values()):
        print(
            f"  hidden anchors: real recording {_num(res.anchors.get('upper'))}, degraded "
            f"{_num(res.anchors.get('low'))}"
        )
    for note in res.notes:
        print(f"  note: {note}")
    if any(r.excluded for r in res.raters):
        print(f"  rule: {EXCLUSION_RULE}")
    print(
        f"  {len(res.records)} records written; summary {res.summary_path}; rebuild the "
        f"leaderboard: ttsadapt leaderboard --suite {args.suite}"
    )
    return 0 if res.records else 1
