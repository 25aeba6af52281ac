"""``ttsadapt speak``: make any registered backbone speak, optionally with a run's adapter.

    ttsadapt speak --backbone voxcpm2 --param model=reference --text "Hello there." --out hi.wav
    ttsadapt speak --backbone voxcpm2 --adapter results/quick/runs/<id> --manifest texts.jsonl --out DIR

The manifest form reads JSON Lines with ``id``, ``text`` and ``language`` (optionally
``speaker_prompt``: a wav to clone, relative to the manifest) and writes ``DIR/<id>.wav`` plus
``DIR/manifest.jsonl`` listing what it wrote, in the keys ``ttsadapt score`` reads (``audio``,
``text``, ``language``, ``speaker_prompt``), so ``ttsadapt score --manifest DIR/manifest.jsonl`` scores
it directly. ``--adapter RUN_DIR`` takes the backbone parameters from the run's ``config.json``
(``--param`` overrides them) and loads the run's ``adapter/`` (LoRA) or trained weights (full
fine-tuning).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, DataError

SPEAK_EPILOG = """manifest (--manifest): JSON Lines, one utterance a line:
  {"id": "u1", "text": "Hello there.", "language": "en"}
  {"id": "u2", "text": "Good night.", "language": "en", "speaker_prompt": "prompts/spk.wav"}
id must be unique and usable as a file name; speaker_prompt (optional) is relative to the
manifest's folder and overrides --prompt-audio for that line. Writes OUT/<id>.wav and
OUT/manifest.jsonl (audio, text, language, speaker_prompt) for `ttsadapt score`.

--param KEY=VALUE sets a backbone parameter (ttsadapt ls backbones --json lists them);
--setting KEY=VALUE a decoding setting of the backbone's synthesize (e.g. cfg_value=1.5,
inference_timesteps=10 for voxcpm2; temperature=0.7, top_k=50 for neutts)."""


def parse_assignment(value: str) -> tuple[str, str]:
    """argparse type of ``KEY=VALUE``."""
    key, eq, raw = value.partition("=")
    if not eq or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key.strip(), raw


def _typed(raw: str) -> Any:
    """A command-line value: JSON when it parses (numbers, booleans, lists), else the string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _run_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.json"
    if not path.is_file():
        raise ConfigError(f"--adapter {run_dir}: no config.json there; expected a run folder")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc


def load_backbone(
    registry: Any,
    name: str,
    params: dict[str, Any],
    adapter: Path | None = None,
    device: str = "cpu",
) -> Any:
    """A loaded backbone; with ``adapter`` (a run folder) its parameters and trained weights."""
    from .training.adapters import load_adapter
    from .training.checkpoint import load_trainable
    from .training.supervised import freeze_prefixes

    merged: dict[str, Any] = {}
    weights = None
    if adapter is not None:
        cfg = _run_config(adapter)
        if cfg.get("backbone") != name:
            raise ConfigError(
                f"--adapter {adapter}: the run adapted backbone {cfg.get('backbone')!r}, not "
                f"{name!r}"
            )
        merged.update(cfg.get("backbone_params") or {})
        weights = adapter / "adapter"
        if not weights.is_dir():
            raise ConfigError(
                f"--adapter {adapter}: no adapter/ folder (a zero-shot run has nothing to load)"
            )
    merged.update(params)
    backbone = registry.get("backbone", name)(**merged)
    backbone.load(device)
    if weights is not None:
        if (weights / "adapter_config.json").is_file():
            load_adapter(backbone.module, weights)
        elif (weights / "trainable.safetensors").is_file():
            # full fine-tuning's weights: every parameter but the codec's, as ``full_ft`` trains
            for param in backbone.module.parameters():
                param.requires_grad_(True)
            freeze_prefixes(backbone.module, list(backbone.frozen_modules()))
            load_trainable(backbone.module, weights / "trainable.safetensors")
        else:
            raise ConfigError(
                f"--adapter {adapter}: adapter/ holds neither a LoRA adapter "
                "(adapter_config.json) nor trained weights (trainable.safetensors)"
            )
    return backbone


def read_texts(path: Path) -> list[dict[str, Any]]:
    """The manifest's lines, checked: an error names the file and line."""
    from .records import iter_jsonl_objects

    rows, seen = [], set()
    for n, row in iter_jsonl_objects(path, DataError):
        for key in ("id", "text"):
            if not str(row.get(key) or "").strip():
                raise DataError(f"{path}:{n}: missing {key!r}")
        uid = str(row["id"])
        if uid in seen or "/" in uid or uid.startswith("."):
            raise DataError(f"{path}:{n}: id {uid!r} is repeated or not usable as a file name")
        seen.add(uid)
        prompt = row.get("speaker_prompt")
        if prompt:
            row["speaker_prompt"] = str((path.parent / prompt).resolve())
        rows.append({"language": "en", **row, "id": uid, "line": n})
    if not rows:
        raise DataError(f"{path}: no lines")
    return rows


def speak(
    backbone: Any,
    rows: list[dict[str, Any]],
    out_dir: Path,
    settings: dict[str, Any],
    prompt: Path | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Synthesise ``rows`` into ``out_dir``; returns the written manifest rows."""
    from tqdm.auto import tqdm

    from .audio import load_audio, write_audio
    from .records import atomic_write_text
    from .types import SynthesisRequest

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    bar = tqdm(total=len(rows), desc=f"speak {backbone.name}", disable=not progress)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        requests = []
        for row in chunk:
            wav = row.get("speaker_prompt") or (str(prompt) if prompt else None)
            audio, sr = load_audio(wav) if wav else (None, None)
            requests.append(
                SynthesisRequest(
                    id=row["id"],
                    text=row["text"],
                    language=row["language"],
                    speaker=str(row.get("speaker", "")),
                    prompt_audio=audio,
                    prompt_sample_rate=sr,
                )
            )
        t0 = time.perf_counter()
        audios = backbone.synthesize(requests, settings or None)
        elapsed = time.perf_counter() - t0
        for row, audio in zip(chunk, audios, strict=True):
            audio = np.asarray(audio, dtype=np.float32)
            write_audio(out_dir / f"{row['id']}.wav", audio, backbone.sample_rate)
            entry = {
                "id": row["id"],
                "audio": f"{row['id']}.wav",
                "text": row["text"],
                "language": row["language"],
                "duration_s": round(len(audio) / backbone.sample_rate, 3),
            }
            wav = row.get("speaker_prompt") or (str(prompt.resolve()) if prompt else None)
            if wav:
                entry["speaker_prompt"] = wav
            written.append(entry)
        audio_s = sum(len(a) for a in audios) / backbone.sample_rate
        bar.set_postfix(rtf=f"{elapsed / max(audio_s, 1e-6):.2f}")
        bar.update(len(chunk))
    bar.close()
    atomic_write_text(
        out_dir / "manifest.jsonl",
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in written),
    )
    return written


def add_speak_cli(sub: Any) -> None:
    p = sub.add_parser(
        "speak",
        help="make a backbone speak (optionally with a run's adapter)",
        description="Synthesise text with any registered backbone; --adapter RUN_DIR loads what "
        "a run trained.",
        epilog=SPEAK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backbone", required=True, help="backbone name (ttsadapt ls backbones)")
    p.add_argument(
        "--param",
        action="append",
        type=parse_assignment,
        default=[],
        metavar="K=V",
        help="backbone parameter (repeatable), e.g. model=reference",
    )
    p.add_argument(
        "--setting",
        action="append",
        type=parse_assignment,
        default=[],
        metavar="K=V",
        help="decoding setting (repeatable), e.g. cfg_value=1.5",
    )
    p.add_argument("--adapter", type=Path, help="a run folder (results/SUITE/runs/ID)")
    p.add_argument("--prompt-audio", type=Path, help="a wav of the voice to clone")
    p.add_argument("--language", default="en", help="language of --text (default en)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="one utterance; --out is a .wav file")
    what.add_argument("--manifest", type=Path, help="JSON Lines of id/text/language; --out a dir")
    p.add_argument("--out", type=Path, required=True, help="a .wav file (--text) or a folder")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch-size", type=int, default=8, help="requests per synthesize call")
    p.set_defaults(func=cmd_speak)


def cmd_speak(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from .cli import _registry

    if args.prompt_audio is not None and not args.prompt_audio.is_file():
        raise DataError(f"--prompt-audio {args.prompt_audio}: file not found")
    registry = _registry(args)
    params = {k: _typed(v) for k, v in args.param}
    settings = {k: _typed(v) for k, v in args.setting}
    backbone = load_backbone(registry, args.backbone, params, args.adapter, args.device)
    if args.text is not None:
        if args.out.suffix.lower() != ".wav":
            raise ConfigError(f"--out {args.out}: with --text, --out is a .wav file")
        rows = [{"id": "utterance", "text": args.text, "language": args.language}]
        with tempfile.TemporaryDirectory() as tmp:
            speak(backbone, rows, Path(tmp), settings, args.prompt_audio, progress=False)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(Path(tmp) / "utterance.wav"), args.out)
        print(f"wrote {args.out}")
        return 0
    rows = read_texts(args.manifest)
    written = speak(backbone, rows, args.out, settings, args.prompt_audio, args.batch_size)
    print(f"wrote {len(written)} files and {args.out / 'manifest.jsonl'}")
    return 0
