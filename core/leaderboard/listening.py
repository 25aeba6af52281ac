"""The page's listening view: every evaluation sentence, every system's audio and transcript.

Each system is heard through one run; its transcripts are shown as a word diff against the text
(:func:`transcript_diff`). Sentences' text and recordings come from :mod:`.media`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .jsonio import read_score_rows
from .load import LoadedResults
from .media import AudioSink, ItemInfo, safe_name
from .summary import Summary
from .tables import output_digits, seeds_text

__all__ = ["first_run", "listening_view", "transcript_diff"]

_NO_SPACE_LANGUAGES = {"th", "lo", "km", "my", "ja", "zh"}


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
    _add_transcripts(asr, cells, meta)
    for m_index, m in enumerate(metrics):
        sc = loaded.scores.get((rid, m["name"]))
        if sc is None or not sc.values:
            continue
        vals = next(iter(sc.values.values()))
        for item, v in zip(sc.items, vals.tolist()):
            order.setdefault(item, None)
            cell = cells.setdefault(item, {})
            cell.setdefault("s", [None] * len(metrics))[m_index] = None if v != v else round(v, 6)
    _add_audio(run_dir / "audio", rid, order, cells, sink)
    return cells


def _add_transcripts(
    asr: list[dict[str, Any]], cells: dict[str, dict[str, Any]], meta: dict[str, dict[str, Any]]
) -> None:
    """The ASR metric's transcript per sentence into its cell, its normalised reference text
    into the sentence's metadata."""
    for r in asr:
        extra = r.get("extra")
        if not isinstance(extra, dict):
            extra = {}
        item = str(r.get("item"))
        if extra.get("transcript") is not None:
            cells.setdefault(item, {})["tr"] = str(extra["transcript"])
        if extra.get("reference_normalized"):
            meta.setdefault(item, {}).setdefault("norm_text", extra["reference_normalized"])


def _add_audio(
    audio_dir: Path,
    rid: str,
    order: dict[str, None],
    cells: dict[str, dict[str, Any]],
    sink: AudioSink,
) -> None:
    """The URL of each sentence's clip (as ``sink`` stores it) into its cell, in page order."""
    if not audio_dir.is_dir():
        return
    for item in list(order):
        if item in cells:
            src = audio_dir / f"{safe_name(item)}.wav"
            url = sink.add(src, f"{rid}/{safe_name(item)}") if src.is_file() else None
            if url is not None:
                cells[item]["a"] = url


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
