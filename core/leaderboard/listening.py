"""The page's listening view: every evaluation sentence, every system's audio and transcript.

Also what the view needs from outside the run folders (the corpus manifest's sentences, read by
:func:`read_eval_manifest`) and where its audio goes (:class:`AudioSink`: a folder beside the page,
data URIs, or nowhere).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, TTSAdaptError
from ..records import iter_jsonl_objects
from .jsonio import read_score_rows
from .load import LoadedResults
from .summary import Summary
from .tables import output_digits, seeds_text

__all__ = [
    "AUDIO_FOLDER",
    "AUDIO_MODES",
    "AudioSink",
    "ItemInfo",
    "encode_audio",
    "first_run",
    "listening_view",
    "read_eval_manifest",
    "safe_name",
    "transcript_diff",
]

AUDIO_FOLDER = "leaderboard_audio"
AUDIO_MODES = ("folder", "embed", "none")
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


def first_run(
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


def _transcript_metric(run_dir: Path, metrics: list[str]) -> str | None:
    """The metric whose score rows carry transcripts (``extra.transcript`` and
    ``extra.reference_normalized``, an ASR metric's): the first of ``metrics`` (sorted) whose first
    row has either; its first row is enough."""
    for metric in sorted(metrics):
        try:
            with open(run_dir / "scores" / f"{metric}.jsonl", "rb") as fh:
                first = fh.readline()
        except OSError:
            continue
        if b'"transcript"' in first or b'"reference_normalized"' in first:
            return metric
    return None


def _run_rows(run_dir: Path, name: str) -> list[dict[str, Any]]:
    path = run_dir / name
    if not path.is_file():
        return []
    try:
        return [r for r in read_score_rows(path) if isinstance(r, dict)]
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
    recording; without it the text is the transcribing metric's normalised reference where there
    is one.
    """
    items = items or {}
    metrics = _view_metrics(summary)
    runs_dir = loaded.suite_dir / "runs"
    runs = loaded.records.drop_duplicates("run_id")
    seeds = dict(zip(runs["run_id"].tolist(), runs["seed"].tolist()))
    shown = [first_run(loaded, list(ids), seeds) for ids in summary.systems["run_ids"]]
    scored: dict[str, list[str]] = {}
    for rid, metric in loaded.scores:
        scored.setdefault(rid, []).append(metric)
    transcribed = {rid: _transcript_metric(runs_dir / rid, scored.get(rid, [])) for rid in shown}
    if not any((runs_dir / rid / "audio").is_dir() or transcribed[rid] for rid in shown):
        # nothing to hear or read: no section (per-utterance scores stay in scores/)
        return {"items": [], "systems": [], "metrics": metrics, "speakers": [], "media": []}
    found = _Found()
    systems, cells_of = [], []
    for row, rid in zip(summary.systems.itertuples(), shown):
        systems.append(_system_entry(row, rid, runs_dir / rid, seeds.get(rid)))
        cells_of.append(_system_cells(loaded, rid, transcribed[rid], metrics, sink, found))
    out_items = [_item_entry(item, items, found, cells_of, sink) for item in sorted(found.order)]
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


def _view_metrics(summary: Summary) -> list[dict[str, Any]]:
    """The headline metrics the page shows per sentence, by name."""
    head = summary.table[summary.table["is_headline"]]
    digits = output_digits(summary.table)
    metric_rows = head.drop_duplicates("metric").sort_values("metric")
    return [
        {
            "name": r.metric,
            "output": r.output,
            "hib": bool(r.higher_is_better),
            "digits": digits.get((r.metric, r.output), 3),
            "human": r.metric in summary.human,
        }
        for r in metric_rows.itertuples()
    ]


@dataclass
class _Found:
    """What the systems' runs say about the sentences: their ids in order of first appearance,
    and per sentence its speaker, language and the normalised text a transcribing metric used."""

    order: dict[str, None] = field(default_factory=dict)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)


def _system_entry(row: Any, rid: str, run_dir: Path, seed: Any) -> dict[str, Any]:
    """A system as the page lists it: label, the run it is heard through, that run's files."""
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
    return {
        "label": row.label,
        "anchor": bool(row.is_anchor),
        "run": rid,
        "seed": None if seed is None or pd.isna(seed) else str(seed),
        "seeds": seeds_text(row.n_seeds, row.seeds),
        "href": rel,
        "files": files,
        "runs": len(row.run_ids),
    }


def _system_cells(
    loaded: LoadedResults,
    rid: str,
    transcribed: str | None,
    metrics: list[dict[str, Any]],
    sink: AudioSink,
    found: _Found,
) -> dict[str, dict[str, Any]]:
    """One system's cell per sentence: synthesis error, transcript, scores and audio."""
    run_dir = loaded.suite_dir / "runs" / rid
    order, meta = found.order, found.meta
    cells: dict[str, dict[str, Any]] = {}
    synth = _run_rows(run_dir, "synthesis.jsonl")
    asr = _run_rows(run_dir, f"scores/{transcribed}.jsonl") if transcribed else []
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
        if sc is None or not sc.values:
            continue
        vals = next(iter(sc.values.values()))
        for item, v in zip(sc.items, vals.tolist()):
            order.setdefault(item, None)
            cell = cells.setdefault(item, {})
            cell.setdefault("s", [None] * len(metrics))[m_index] = None if v != v else round(v, 6)
    audio_dir = run_dir / "audio"
    if audio_dir.is_dir():
        for item in list(order):
            if item in cells:
                src = audio_dir / f"{safe_name(item)}.wav"
                url = sink.add(src, f"{rid}/{safe_name(item)}") if src.is_file() else None
                if url is not None:
                    cells[item]["a"] = url
    return cells


def _item_entry(
    item: str,
    items: dict[str, ItemInfo],
    found: _Found,
    cells_of: list[dict[str, dict[str, Any]]],
    sink: AudioSink,
) -> dict[str, Any]:
    """One sentence as the page shows it: text, speaker, prompt and recording, every system's
    cell (its transcript as a word diff against the text)."""
    info = items.get(item) or ItemInfo(item)
    m = found.meta.get(item, {})
    text = info.text or m.get("norm_text")
    language = info.language or m.get("language")
    speaker = info.speaker or m.get("speaker")
    row_cells = []
    for cells in cells_of:
        cell = cells.get(item)
        if cell is not None and "tr" in cell:
            transcript = cell.pop("tr")
            cell["t"] = transcript_diff(text, transcript, language) if text else [["=", transcript]]
        row_cells.append(cell)
    return {
        "id": item,
        "speaker": speaker,
        "text": text,
        "textSource": "manifest" if info.text else ("asr" if text else None),
        "prompt": sink.add(info.prompt, f"prompts/{safe_name(speaker or item)}"),
        "ref": sink.add(info.recording, f"recordings/{safe_name(item)}"),
        "cells": row_cells,
    }
