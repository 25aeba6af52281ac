"""The ``ttsadapt data`` command group: inspect, validate, build, import-hf.

The lead's CLI calls :func:`add_data_cli` with its argparse sub-parsers; each sub-command's
``func`` takes the parsed namespace and returns the exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import DataError, TTSAdaptError
from .cards import DNSMOS_MAX_CLIPS, DNSMOS_MAX_MINUTES
from .manifest import (
    AUDIO_CHECK_CACHE_FILE,
    DEFAULT_MAX_CLIPPED_FRACTION,
    DEFAULT_MIN_DURATION_S,
    DEFAULT_SILENCE_PEAK_DBFS,
)

EXIT_CODES = """exit codes:
  0  success
  2  bad arguments or an invalid spec (the field is named)
  4  the manifest or dataset itself cannot be read (DataError)
  5  `validate` only: some lines were set aside (each is printed; the rest are fine)
"""

CHECKS = f"""checks (by default the ones every run applies to the clips it trains, validates and
evaluates on):
  every line: JSON, required fields, id unique, text non-empty, language tag, path stays inside
  header: the file (and its speaker_prompt / reference_audio) exists, opens, is not cut short
    or empty; the clip lasts at least --min-duration (default {DEFAULT_MIN_DURATION_S:g} s)
    and at most --max-duration
  full (default): every file is decoded; NaN/inf samples, more than
    {DEFAULT_MAX_CLIPPED_FRACTION:.0%} of samples at full scale (clipping) and silence (all zero,
    or the peak below {DEFAULT_SILENCE_PEAK_DBFS:g} dBFS) set a line aside. What a decode measured
    is cached per file (path, size, modification time) in
    $TTSADAPT_CACHE/{AUDIO_CHECK_CACHE_FILE} (default ~/.cache/ttsadapt), so checking again
    decodes only files that changed.
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text}")
    return value


def _add_check_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--check",
        choices=("none", "header", "full"),
        default="full",
        help="full (default): decode every file and check its samples; header: file headers "
        "only (faster, misses NaN/clipped/silent audio); none: open no file",
    )
    p.add_argument(
        "--min-duration",
        type=_non_negative_float,
        default=DEFAULT_MIN_DURATION_S,
        metavar="S",
        help="shortest usable clip in seconds (default %(default)s; 0 turns it off)",
    )
    p.add_argument(
        "--max-duration",
        type=_positive_float,
        default=None,
        metavar="S",
        help="longest usable clip in seconds (default: no limit)",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="decode every file even when the audio check cache knows it",
    )


def _check_kwargs(args: argparse.Namespace) -> dict:
    from .manifest import AudioCheckCache

    return {
        "check_audio": args.check,
        "duration_window": (args.min_duration or None, args.max_duration),
        "cache": None if args.no_cache else AudioCheckCache(),
    }


def _print_set_aside(manifest: str, quarantine: list) -> None:
    """One line per broken manifest line: where, which clip, why."""
    for q in quarantine:
        clip = q.id if q.id is not None else "(no id)"
        print(f"{manifest}:{q.line}: {clip}: [{q.code}] {q.reason}")


def _inspect(args: argparse.Namespace) -> int:
    from .cards import DnsmosSample, inspect_manifest

    sample = DnsmosSample(
        all_clips=args.dnsmos_all,
        max_clips=args.dnsmos_clips,
        max_minutes=args.dnsmos_minutes,
        seed=args.dnsmos_seed,
    )
    card = inspect_manifest(
        Path(args.manifest),
        Path(args.out) if args.out else None,
        with_dnsmos=not args.no_dnsmos,
        with_wada=not args.no_wada,
        dnsmos_sample=sample,
        **_check_kwargs(args),
    )
    from .cards import card_markdown

    print(card_markdown(card, f"Data card: {Path(args.manifest).name}"))
    files = card["files"]
    print(f"wrote {files['json']}, {files['md']}, {files['png']}", file=sys.stderr)
    if card["quarantine"]["count"]:
        print(
            f"{card['quarantine']['count']} line(s) set aside, not in the card's numbers: "
            f"{card['quarantine']['by_reason']} (each is listed under 'Lines set aside')",
            file=sys.stderr,
        )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .manifest import load_manifest

    langs = set(args.languages.split(",")) if args.languages else None
    load = load_manifest(Path(args.manifest), languages=langs, **_check_kwargs(args))
    _print_set_aside(args.manifest, load.quarantine)
    if args.quarantine:
        load.write_quarantine(Path(args.quarantine))
    print(json.dumps(load.report(), indent=2), file=sys.stderr)
    if load.quarantine:
        print(
            f"{len(load.quarantine)} of {load.lines} line(s) set aside "
            f"({', '.join(f'{k}: {v}' for k, v in load.counts().items())}); "
            f"{len(load.clips)} usable",
            file=sys.stderr,
        )
    return 4 if load.quarantine else 0  # 4: data error (README, exit codes)


def _build(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from .corpus import CorpusSpec, build_corpus
    from .recipes import format_validation_error

    table: dict = {}
    if args.spec:
        text = Path(args.spec).read_text(encoding="utf-8")
        if args.spec.endswith(".json"):
            table = json.loads(text)
        else:
            import tomllib

            table = tomllib.loads(text)
            table = table.get("corpus", table)
    try:
        spec = CorpusSpec.model_validate(table)
    except ValidationError as exc:
        print(f"error: {format_validation_error(exc, args.spec or 'corpus')}", file=sys.stderr)
        return 2
    manifest = build_corpus(
        spec, Path(args.cache_dir) if args.cache_dir else None, progress=not args.quiet
    )
    print(manifest)
    return 0


def _import_hf(args: argparse.Namespace) -> int:
    from .hf_import import import_hf_dataset

    report = import_hf_dataset(
        args.dataset,
        Path(args.out_dir),
        split=args.split,
        config=args.config,
        audio_column=args.audio_column,
        text_column=args.text_column,
        speaker_column=args.speaker_column,
        language=args.language,
        language_column=args.language_column,
        sample_rate=args.sample_rate,
        limit=args.limit,
    )
    for s in report["skipped"]:
        print(f"row {s['row']}: skipped: {s['reason']}", file=sys.stderr)
    print(report["manifest"])
    return 0


def _guard(func):
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except TTSAdaptError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code

    return run


def add_data_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``data`` with sub-commands inspect / validate / build / import-hf."""
    fmt = argparse.RawDescriptionHelpFormatter
    data = subparsers.add_parser(
        "data",
        help="inspect, validate, build and import training data",
        description="Data tools: data cards, manifest validation, the offline corpus, HF import.",
        epilog=EXIT_CODES,
        formatter_class=fmt,
    )
    sub = data.add_subparsers(dest="data_command", metavar="{inspect,validate,build,import-hf}")
    sub.required = True

    p = sub.add_parser(
        "inspect",
        help="write a data card (JSON, Markdown, PNG) per speaker and language",
        description="Per speaker and language: hours, clips, duration, words, frame energy "
        "(mean/std dB), DNS-MOS, WADA-SNR and the predicted adaptation risk "
        "(energy std >= 13 dB low, < 10 dB high). Lines the checks set aside are listed (line, "
        "id, reason) in the output and the card, and left out of its numbers.",
        epilog=CHECKS + "\n" + EXIT_CODES,
        formatter_class=fmt,
    )
    p.add_argument("--manifest", required=True, help="JSON Lines manifest")
    _add_check_options(p)
    p.add_argument(
        "--out", help="card JSON path (default: <manifest>.card.json); .md/.png beside it"
    )
    p.add_argument("--no-dnsmos", action="store_true", help="skip DNS-MOS (faster)")
    p.add_argument(
        "--dnsmos-all",
        action="store_true",
        help="DNS-MOS on every clip (slow: ~1 model window per audio second) instead of the "
        "default deterministic per-speaker sample",
    )
    p.add_argument(
        "--dnsmos-clips",
        type=_positive_int,
        default=DNSMOS_MAX_CLIPS,
        metavar="N",
        help="DNS-MOS sample: at most N clips per speaker and language (default %(default)s)",
    )
    p.add_argument(
        "--dnsmos-minutes",
        type=_positive_float,
        default=DNSMOS_MAX_MINUTES,
        metavar="M",
        help="DNS-MOS sample: stop a speaker's sample once M minutes of audio are in it "
        "(default %(default)s)",
    )
    p.add_argument(
        "--dnsmos-seed", type=int, default=0, help="seed of the DNS-MOS sample (default 0)"
    )
    p.add_argument("--no-wada", action="store_true", help="skip WADA-SNR")
    p.set_defaults(func=_guard(_inspect))

    p = sub.add_parser(
        "validate",
        help="check every manifest line; name each line set aside (line, id, reason)",
        description="Checks every line as a run would and prints one line per broken manifest "
        "line: MANIFEST:LINE: ID: [reason code] reason. Exits 4 (data error) when any line was set aside.",
        epilog=CHECKS + "\n" + EXIT_CODES,
        formatter_class=fmt,
    )
    p.add_argument("--manifest", required=True)
    _add_check_options(p)
    p.add_argument("--languages", help="comma-separated allowed language tags")
    p.add_argument("--quarantine", help="write the quarantine report here (JSON Lines)")
    p.set_defaults(func=_guard(_validate))

    p = sub.add_parser(
        "build",
        help="build (or reuse from the cache) the offline multi-speaker corpus",
        description="Speaks the shipped sentence sets with offline engines (espeak-ng; flite, "
        "festival and Kokoro when installed) under per-speaker acoustic conditions; train/validation/eval "
        "splits with held-out eval sentences. Prints the manifest path.",
        epilog=EXIT_CODES,
        formatter_class=fmt,
    )
    p.add_argument(
        "--spec",
        help="corpus spec (.toml with a [corpus] table, or .json); default spec if omitted",
    )
    p.add_argument("--cache-dir", help="default: $TTSADAPT_CACHE or ~/.cache/ttsadapt")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_guard(_build))

    p = sub.add_parser(
        "import-hf",
        help="import a Hugging Face dataset (hub id or local folder) as a manifest",
        epilog=EXIT_CODES,
        formatter_class=fmt,
    )
    p.add_argument("--dataset", required=True, help="hub id, or a local dataset folder (offline)")
    p.add_argument("--out-dir", required=True, help="writes manifest.jsonl and wavs/ here")
    p.add_argument("--split", default="train")
    p.add_argument("--config", default=None, help="dataset configuration name")
    p.add_argument("--audio-column", default="audio")
    p.add_argument("--text-column", default="text")
    p.add_argument("--speaker-column", default=None)
    p.add_argument("--language", default="en", help="language tag when no --language-column")
    p.add_argument("--language-column", default=None)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--limit", type=int, default=None, help="import at most this many rows")
    p.set_defaults(func=_guard(_import_hf))
    return data
