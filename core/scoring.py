"""Batched, cached scoring of evaluation items by several metrics; ``ttsadapt score`` on top.

:class:`Scorer` runs each metric over a list of :class:`EvalItem` in batches, setting a metric up
(loading its model) only when some item is not in the cache yet. The cache is an SQLite file
(WAL mode: safe for concurrent processes; each write is one transaction) keyed by
sha256(metric name, version, resolved params, audio bytes + sample rate, and what the metric reads
besides: text and language, reference recording, speaker prompt). Bumping a metric's ``version`` or
changing a parameter misses the old entries.

:func:`score_manifest` loads a manifest's audio, scores it, writes one JSON line per item
atomically, and returns a summary that :func:`format_summary` prints as a table.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .audio import load_audio
from .components import Metric
from .errors import DataError, ItemError
from .records import atomic_write_jsonl
from .types import EvalItem, ItemScore

CACHE_FILE = "scores.sqlite"
NOT_APPLICABLE = "not applicable"


def _audio_digest(audio: np.ndarray | None, sample_rate: int | None) -> str | None:
    if audio is None:
        return None
    arr = np.ascontiguousarray(audio)
    h = hashlib.sha256(f"{arr.dtype.str}|{arr.shape}|{sample_rate}|".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def cache_key(metric: Metric, item: EvalItem) -> str:
    """Content key of one (metric, item) score."""
    parts: dict[str, Any] = {
        "metric": metric.name,
        "version": metric.version,
        "params": metric.params.model_dump(mode="json"),
        "audio": _audio_digest(item.audio, item.sample_rate),
    }
    if metric.needs_text:
        parts["text"] = item.text
        parts["language"] = item.language
    if metric.needs_reference_audio:
        parts["reference"] = _audio_digest(item.reference_audio, item.reference_sample_rate)
    if metric.needs_speaker_prompt:
        parts["prompt"] = _audio_digest(item.speaker_prompt, item.speaker_prompt_sample_rate)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class ScoreCache:
    """(key -> ItemScore) in one SQLite file; concurrent readers and writers are safe."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=60.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, metric TEXT, "
            "payload TEXT NOT NULL, created REAL)"
        )
        self._db.commit()

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, payload FROM scores WHERE key IN ({marks})", chunk
            ).fetchall()
            found.update((k, json.loads(p)) for k, p in rows)
        return found

    def put_many(self, metric: str, entries: Sequence[tuple[str, ItemScore]]) -> None:
        now = time.time()
        rows = [
            (
                key,
                metric,
                json.dumps({"values": s.values, "error": s.error, "extra": s.extra}, default=str),
                now,
            )
            for key, s in entries
        ]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)", rows)

    def close(self) -> None:
        self._db.close()


class Scorer:
    """Scores items with several metrics, each set up once and only when needed, with a cache.

    :param metrics: ``{name: metric instance}`` (the name is the key of the result).
    :param cache_dir: folder for ``scores.sqlite``; ``None`` disables caching.
    :param batch_size: items handed to ``Metric.score`` per call.
    """

    def __init__(
        self, metrics: dict[str, Metric], cache_dir: Path | None, batch_size: int = 16
    ) -> None:
        self.metrics = dict(metrics)
        self.cache = ScoreCache(Path(cache_dir) / CACHE_FILE) if cache_dir is not None else None
        self.batch_size = max(1, batch_size)
        self._ready: set[str] = set()

    def score(self, items: list[EvalItem], progress: bool = True) -> dict[str, list[ItemScore]]:
        """``{metric name: [ItemScore per item, in order]}``; a bad item gets an error row."""
        return {
            name: self._score_metric(name, metric, items, progress)
            for name, metric in self.metrics.items()
        }

    def _score_metric(
        self, name: str, metric: Metric, items: list[EvalItem], progress: bool
    ) -> list[ItemScore]:
        from tqdm.auto import tqdm

        results: list[ItemScore | None] = [None] * len(items)
        keys = [cache_key(metric, it) for it in items] if self.cache else []
        if self.cache:
            cached = self.cache.get_many(keys)
            for i, key in enumerate(keys):
                if key in cached:
                    c = cached[key]
                    results[i] = ItemScore(
                        id=items[i].id, values=c["values"], error=c["error"], extra=c["extra"]
                    )
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            if name not in self._ready:
                metric.setup()
                self._ready.add(name)
            bar = tqdm(total=len(todo), desc=f"scoring {name}", disable=not progress, leave=False)
            for start in range(0, len(todo), self.batch_size):
                idx = todo[start : start + self.batch_size]
                scores = self._run(metric, [items[i] for i in idx])
                for i, s in zip(idx, scores):
                    results[i] = s
                if self.cache:
                    self.cache.put_many(name, [(keys[i], results[i]) for i in idx])
                bar.update(len(idx))
            bar.close()
        return [r for r in results if r is not None]

    @staticmethod
    def _run(metric: Metric, batch: list[EvalItem]) -> list[ItemScore]:
        """Score a batch; a metric that raises on the batch is retried item by item so one bad
        item never sinks the rest. Non-finite values become an error row."""
        try:
            scores = list(metric.score(batch))
            if len(scores) != len(batch):
                raise RuntimeError(
                    f"metric {metric.name} returned {len(scores)} scores for {len(batch)} items"
                )
        except Exception:  # noqa: BLE001 - isolate the failing item below
            if len(batch) == 1:
                import traceback

                exc_line = traceback.format_exc().strip().splitlines()[-1]
                return [ItemScore(id=batch[0].id, error=f"metric failed: {exc_line}")]
            return [s for it in batch for s in Scorer._run(metric, [it])]
        out = []
        for item, s in zip(batch, scores):
            bad = [k for k, v in s.values.items() if not math.isfinite(v)]
            if s.error is None and bad:
                s = ItemScore(id=item.id, error=f"non-finite score: {', '.join(bad)}")
            out.append(s)
        return out

    def close(self) -> None:
        if self.cache:
            self.cache.close()


# --------------------------------------------------------------------------- manifests


def reason_category(reason: str) -> str:
    """``"too short: audio lasts 0.05 s ..."`` -> ``"too short"`` (what summaries count)."""
    return reason.split(":", 1)[0].strip() or reason


def _read_manifest_rows(manifest: Path) -> list[dict[str, Any]]:
    if not manifest.is_file():
        raise DataError(f"manifest not found: {manifest}")
    rows = []
    with open(manifest, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{manifest}:{n}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("audio"), str):
                raise DataError(f'{manifest}:{n}: expected an object with an "audio" path')
            row.setdefault("id", row.get("id") or Path(row["audio"]).stem)
            rows.append(row)
    ids = Counter(str(r["id"]) for r in rows)
    dup = [i for i, c in ids.items() if c > 1]
    if dup:
        raise DataError(f"{manifest}: duplicate item ids {dup[:5]}; give each line a unique id")
    return rows


def _load_optional(base: Path, rel: Any, field: str) -> tuple[np.ndarray | None, int | None]:
    if not rel:
        return None, None
    try:
        return load_audio(base / str(rel))
    except ItemError as exc:
        raise ItemError(f"unreadable {field}: {exc}") from exc


def score_manifest(
    registry: Any,
    manifest: Path,
    metric_names: list[str],
    out: Path,
    cache_dir: Path | None,
    metric_params: dict[str, dict[str, Any]] | None = None,
    progress: bool = True,
    chunk_size: int = 64,
) -> dict[str, Any]:
    """Score every line of ``manifest`` with ``metric_names``; write ``out`` (JSON Lines, one row
    per item: ``id``, ``audio``, ``speaker``, ``language``, ``values`` {metric: {output: float}},
    ``errors`` {metric: reason}, ``extra`` {metric: {...}}) and return the summary."""
    manifest = Path(manifest)
    metric_params = metric_params or {}
    metrics = {n: registry.get("metric", n)(**metric_params.get(n, {})) for n in metric_names}
    rows = _read_manifest_rows(manifest)
    base = manifest.parent
    scorer = Scorer(metrics, cache_dir)
    out_rows: list[dict[str, Any]] = []
    try:
        for start in range(0, len(rows), chunk_size):
            chunk = rows[start : start + chunk_size]
            items: list[EvalItem] = []
            item_rows: list[dict[str, Any]] = []
            for row in chunk:
                out_row: dict[str, Any] = {
                    "id": str(row["id"]),
                    "audio": row["audio"],
                    "speaker": row.get("speaker", ""),
                    "language": row.get("language", ""),
                    "values": {},
                    "errors": {},
                    "extra": {},
                }
                out_rows.append(out_row)
                field_errors: dict[str, str] = {}
                try:
                    audio, sr = load_audio(base / row["audio"])
                except ItemError as exc:
                    for n in metrics:
                        out_row["errors"][n] = f"unreadable audio: {exc}"
                    continue
                extras: dict[str, Any] = {}
                for field, attr in (("ref_audio", "reference"), ("speaker_prompt", "prompt")):
                    try:
                        extras[attr] = _load_optional(base, row.get(field), field)
                    except ItemError as exc:
                        extras[attr] = (None, None)
                        field_errors[attr] = str(exc)
                out_row["_field_errors"] = field_errors
                items.append(
                    EvalItem(
                        id=out_row["id"],
                        audio=audio,
                        sample_rate=sr,
                        text=str(row.get("text", "")),
                        language=str(row.get("language") or "en"),
                        speaker=str(row.get("speaker", "")),
                        reference_audio=extras["reference"][0],
                        reference_sample_rate=extras["reference"][1],
                        speaker_prompt=extras["prompt"][0],
                        speaker_prompt_sample_rate=extras["prompt"][1],
                    )
                )
                item_rows.append(out_row)
            scored = scorer.score(items, progress=progress) if items else {}
            for name, scores in scored.items():
                metric = metrics[name]
                for out_row, s in zip(item_rows, scores):
                    fe = out_row["_field_errors"]
                    if metric.needs_reference_audio and "reference" in fe:
                        out_row["errors"][name] = fe["reference"]
                    elif metric.needs_speaker_prompt and "prompt" in fe:
                        out_row["errors"][name] = fe["prompt"]
                    elif s.error is not None:
                        out_row["errors"][name] = s.error
                    else:
                        out_row["values"][name] = s.values
                    if s.extra and name not in out_row["errors"]:
                        out_row["extra"][name] = s.extra
            for out_row in item_rows:
                out_row.pop("_field_errors", None)
    finally:
        scorer.close()
    atomic_write_jsonl(Path(out), out_rows)
    return summarize(out_rows, metrics)


def summarize(rows: list[dict[str, Any]], metrics: dict[str, Metric]) -> dict[str, Any]:
    """Per metric: mean and n of each output over scored items, n ok, n not applicable, and
    error counts by reason category."""
    summary: dict[str, Any] = {"n_items": len(rows), "metrics": {}}
    for name, metric in metrics.items():
        values = [r["values"][name] for r in rows if name in r.get("values", {})]
        reasons = [r["errors"][name] for r in rows if name in r.get("errors", {})]
        na = [x for x in reasons if x.startswith(NOT_APPLICABLE)]
        errors = Counter(reason_category(x) for x in reasons if not x.startswith(NOT_APPLICABLE))
        outputs = {}
        for o in metric.outputs:
            xs = [v[o.name] for v in values if o.name in v]
            outputs[o.name] = {
                "mean": float(np.mean(xs)) if xs else None,
                "n": len(xs),
                "higher_is_better": o.higher_is_better,
            }
        summary["metrics"][name] = {
            "outputs": outputs,
            "n_ok": len(values),
            "n_not_applicable": len(na),
            "n_errors": sum(errors.values()),
            "errors": dict(errors),
        }
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """A plain-text table: one line per metric output, then error reasons."""
    lines = [f"{summary['n_items']} items"]
    header = f"{'metric':<20} {'output':<12} {'mean':>9} {'n':>6} {'n/a':>5} {'errors':>6}"
    lines += [header, "-" * len(header)]
    notes = []
    for name, m in summary["metrics"].items():
        for i, (out, o) in enumerate(m["outputs"].items()):
            arrow = "↑" if o["higher_is_better"] else "↓"
            mean = "-" if o["mean"] is None else f"{o['mean']:.4f}"
            first = i == 0
            lines.append(
                f"{name if first else '':<20} {out + ' ' + arrow:<12} {mean:>9} {o['n']:>6} "
                f"{m['n_not_applicable'] if first else '':>5} {m['n_errors'] if first else '':>6}"
            )
        for reason, count in sorted(m["errors"].items(), key=lambda kv: -kv[1]):
            notes.append(f"  {name}: {count} x {reason}")
    if notes:
        lines += ["", "errors by reason:", *notes]
    return "\n".join(lines)
