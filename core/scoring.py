"""Batched, cached scoring of evaluation items by several metrics; ``ttsadapt score`` on top.

:class:`Scorer` runs each metric over a list of :class:`EvalItem` in batches, setting a metric up
(loading its model) only when some item is not in the cache yet, and once per process for each
metric instance (:func:`ensure_set_up`). It is the one scorer every evaluation path uses (see
:mod:`ttsadapt.evaluation`: runs, the dev metric, data cards, data filters). The cache is an SQLite file
(WAL mode: safe for concurrent processes; each write is one transaction) keyed by
sha256(metric name, version, resolved params, model provenance = package versions and weight-file
hashes, audio bytes + sample rate, and what the metric reads besides: text and language, reference
recording, speaker prompt). Bumping a metric's ``version``, changing a parameter, or installing
another version of a scoring model's package or weights misses the old entries.

:func:`score_manifest` loads a manifest's audio, scores it, writes one JSON line per item
atomically, and returns a summary that :func:`format_summary` prints as a table.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
import weakref
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .audio import load_audio
from .components import Metric
from .errors import ConfigError, DataError, ItemError
from .records import atomic_write_jsonl
from .results import ManifestScoreRow
from .sqlite_wal import connect_wal
from .types import EvalItem, ItemScore

CACHE_FILE = "scores.sqlite"
# numpy's BLAS splits a matrix product (a mel filterbank, say) across its threads, one per core by
# default, and the split changes float sums in the last bits. Whisper amplifies that: the same
# clip's features computed on one core and on two gave different transcripts (CER 0.67 against
# 0.04). Metrics therefore compute with one BLAS thread, whatever the machine.
SCORING_BLAS_THREADS = 1
NOT_APPLICABLE = "not applicable"


def _audio_digest(audio: np.ndarray | None, sample_rate: int | None) -> str | None:
    if audio is None:
        return None
    arr = np.ascontiguousarray(audio)
    h = hashlib.sha256(f"{arr.dtype.str}|{arr.shape}|{sample_rate}|".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def cache_key(metric: Metric, item: EvalItem, provenance: dict[str, Any] | None = None) -> str:
    """Content key of one (metric, item) score. ``provenance``: ``metric.model_provenance()``
    (computed here when not given; pass it when keying many items)."""
    parts: dict[str, Any] = {
        "metric": metric.name,
        "version": metric.version,
        "blas_threads": SCORING_BLAS_THREADS,
        "params": metric.params.model_dump(mode="json"),
        "models": metric.model_provenance() if provenance is None else provenance,
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
        self._db = connect_wal(
            self.path,
            "CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, metric TEXT, "
            "payload TEXT NOT NULL, created REAL)",
        )

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


_SET_UP: weakref.WeakValueDictionary[int, Metric] = weakref.WeakValueDictionary()


def ensure_set_up(metric: Metric) -> None:
    """Set ``metric`` up (load its model) unless this process already set this instance up."""
    if _SET_UP.get(id(metric)) is metric:
        return
    metric.setup()
    with contextlib.suppress(TypeError):  # not weak-referenceable: the next scorer sets it up again
        _SET_UP[id(metric)] = metric


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

    def score(self, items: list[EvalItem], progress: bool = True) -> dict[str, list[ItemScore]]:
        """``{metric name: [ItemScore per item, in order]}``; a bad item gets an error row."""
        return {
            name: self._score_metric(name, metric, items, progress)
            for name, metric in self.metrics.items()
        }

    def _score_metric(
        self, name: str, metric: Metric, items: list[EvalItem], progress: bool
    ) -> list[ItemScore]:
        results: list[ItemScore | None] = [None] * len(items)
        keys: list[str] = []
        if self.cache:
            prov = metric.model_provenance()
            keys = [cache_key(metric, it, prov) for it in items]
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
            self._compute(name, metric, items, todo, keys, results, progress)
        return [r for r in results if r is not None]

    def _compute(
        self,
        name: str,
        metric: Metric,
        items: list[EvalItem],
        todo: list[int],
        keys: list[str],
        results: list[ItemScore | None],
        progress: bool,
    ) -> None:
        """Score the items ``todo`` (indices into ``items``) into ``results``, caching each batch."""
        from threadpoolctl import threadpool_limits
        from tqdm.auto import tqdm

        with threadpool_limits(limits=SCORING_BLAS_THREADS, user_api="blas"):
            ensure_set_up(metric)
            bar = tqdm(total=len(todo), desc=f"scoring {name}", disable=not progress, leave=False)
            for start in range(0, len(todo), self.batch_size):
                idx = todo[start : start + self.batch_size]
                scores = self._run(metric, [items[i] for i in idx])
                for i, s in zip(idx, scores):
                    results[i] = s
                if self.cache:
                    self.cache.put_many(name, [(keys[i], s) for i, s in zip(idx, scores)])
                bar.update(len(idx))
            bar.close()

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


# `ttsadapt score` manifest keys: the same names as corpus manifests (``ttsadapt.data.manifest``).
# key -> (meaning, the ``Metric`` flag of the metrics that need it, built-in metrics needing it)
SCORE_MANIFEST_KEYS: dict[str, tuple[str, str | None, str]] = {
    "audio": ("the audio file to score (required)", None, "every metric"),
    "id": ("item id (default: the audio file name without its suffix)", None, ""),
    "text": ("what the audio should say (its transcript)", "needs_text", "cer"),
    "language": (
        'language tag of the text, e.g. "en" or "pt-BR" (default "en")',
        "needs_text",
        "cer",
    ),
    "speaker": ("speaker label, copied to the output rows", None, ""),
    "speaker_prompt": (
        "a recording of the target speaker (any sentence): the voice a system clones and "
        "speaker similarity compares with",
        "needs_speaker_prompt",
        "speaker_similarity",
    ),
    "reference_audio": (
        "a time-aligned recording of the same utterance (same words, same timing); items "
        "without one are counted as not applicable",
        "needs_reference_audio",
        "pesq, stoi",
    ),
}
# old spellings, read under the new name with a warning naming file, line and new key
SCORE_KEY_ALIASES = {"ref_audio": "reference_audio"}  # what `ttsadapt score` read it as


def _read_manifest_rows(manifest: Path) -> list[dict[str, Any]]:
    """The manifest's lines as dicts, old key spellings renamed (:data:`SCORE_KEY_ALIASES`, warned
    once per file); each row also carries ``_line`` (1-based) and ``_spelled`` ({key: as written})."""
    from .data.manifest import rename_deprecated_keys

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
            try:
                row, spelled = rename_deprecated_keys(row, SCORE_KEY_ALIASES, manifest, n)
            except ValueError as exc:
                raise DataError(f"{manifest}:{n}: {exc}") from None
            for key in ("speaker_prompt", "reference_audio"):
                if row.get(key) is not None and not isinstance(row[key], str):
                    raise DataError(
                        f'{manifest}:{n}: "{spelled.get(key, key)}" must be an audio path '
                        f"(relative to the manifest's folder), got {row[key]!r}"
                    )
            if not isinstance(row.get("text", ""), str):
                raise DataError(f'{manifest}:{n}: "text" must be a string, got {row["text"]!r}')
            row.setdefault("id", row.get("id") or Path(row["audio"]).stem)
            row["_line"], row["_spelled"] = n, spelled
            rows.append(row)
    ids = Counter(str(r["id"]) for r in rows)
    dup = [i for i, c in ids.items() if c > 1]
    if dup:
        raise DataError(f"{manifest}: duplicate item ids {dup[:5]}; give each line a unique id")
    return rows


def _load_optional(base: Path, rel: Any, field: str) -> tuple[np.ndarray | None, int | None]:
    """The audio at ``rel`` (relative to ``base``), or ``(None, None)`` when the key is absent or
    empty; ``field`` is the key as the manifest spells it, for the error."""
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
    """Score every line of ``manifest`` (keys: :data:`SCORE_MANIFEST_KEYS`) with ``metric_names``;
    write ``out`` (JSON Lines, one row per item: ``id``, ``audio``, ``speaker``, ``language``,
    ``values`` {metric: {output: float}}, ``errors`` {metric: reason}, ``extra`` {metric: {...}})
    and return the summary.

    ``metric_params`` maps a metric name to its parameters, validated by its ``Params``
    (:class:`ConfigError` naming the metric and the key). A metric never sees an item that lacks
    what it needs: the item's error row names the missing key (``missing text: …``,
    ``missing speaker_prompt: …``, ``not applicable: no reference_audio: …``)."""
    manifest = Path(manifest)
    metrics = _build_metrics(registry, metric_names, metric_params or {})
    rows = _read_manifest_rows(manifest)
    base = manifest.parent
    # one scorer per metric, so each metric sees only the items that have what it needs
    scorers = {n: Scorer({n: m}, cache_dir) for n, m in metrics.items()}
    out_rows: list[dict[str, Any]] = []
    try:
        for start in range(0, len(rows), chunk_size):
            todo: dict[str, list[tuple[EvalItem, dict[str, Any]]]] = {n: [] for n in metrics}
            for row in rows[start : start + chunk_size]:
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
                try:
                    audio, sr = load_audio(base / row["audio"])
                except ItemError as exc:
                    for n in metrics:
                        out_row["errors"][n] = f"unreadable audio: {exc}"
                    continue
                extras, unreadable = _load_extras(base, row)
                item = EvalItem(
                    id=out_row["id"],
                    audio=audio,
                    sample_rate=sr,
                    text=str(row.get("text", "")),
                    language=str(row.get("language") or "en"),
                    speaker=str(row.get("speaker", "")),
                    reference_audio=extras["reference_audio"][0],
                    reference_sample_rate=extras["reference_audio"][1],
                    speaker_prompt=extras["speaker_prompt"][0],
                    speaker_prompt_sample_rate=extras["speaker_prompt"][1],
                )
                where = f"line {row['_line']} of {manifest.name}"
                for n, m in metrics.items():
                    missing = _missing_input(n, m, item, row, where, unreadable)
                    if missing is not None:
                        out_row["errors"][n] = missing
                    else:
                        todo[n].append((item, out_row))
            for n, pairs in todo.items():
                if not pairs:
                    continue
                scores = scorers[n].score([it for it, _ in pairs], progress=progress)[n]
                for (_, out_row), s in zip(pairs, scores):
                    if s.error is not None:
                        out_row["errors"][n] = s.error
                    else:
                        out_row["values"][n] = s.values
                        if s.extra:
                            out_row["extra"][n] = s.extra
    finally:
        for scorer in scorers.values():
            scorer.close()
    atomic_write_jsonl(
        Path(out),
        (
            ManifestScoreRow.from_dict(r, source=f"{out}: item {r['id']}").to_dict()
            for r in out_rows
        ),
    )
    return summarize(out_rows, metrics)


def _build_metrics(
    registry: Any, metric_names: list[str], metric_params: dict[str, dict[str, Any]]
) -> dict[str, Metric]:
    """The metrics to score with, each made with its parameters (:class:`ConfigError` naming the
    metric and the key when its ``Params`` refuse them, or when they are for a metric not scored)."""
    from pydantic import ValidationError

    unused = [n for n in metric_params if n not in metric_names]
    if unused:
        raise ConfigError(
            f"parameters given for metric {unused[0]!r}, which is not among the metrics scored "
            f"({', '.join(metric_names)})"
        )
    metrics: dict[str, Metric] = {}
    for n in metric_names:
        cls = registry.get("metric", n)
        try:
            metrics[n] = cls(**metric_params.get(n, {}))
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(x) for x in err["loc"]) or "(all)"
            what = "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"]
            known = ", ".join(cls.Params.model_fields) or "none"
            raise ConfigError(
                f"metric {n}, parameter {key}: {what} (got {err.get('input')!r}); "
                f"parameters of {n}: {known}"
            ) from None
    return metrics


def _load_extras(
    base: Path, row: dict[str, Any]
) -> tuple[dict[str, tuple[np.ndarray | None, int | None]], dict[str, str]]:
    """A manifest line's reference recording and speaker prompt (``(None, None)`` when absent),
    and the reason for each that is given but cannot be read."""
    extras: dict[str, tuple[np.ndarray | None, int | None]] = {}
    unreadable: dict[str, str] = {}
    for key in ("reference_audio", "speaker_prompt"):
        try:
            extras[key] = _load_optional(base, row.get(key), row["_spelled"].get(key, key))
        except ItemError as exc:
            extras[key] = (None, None)
            unreadable[key] = str(exc)
    return extras, unreadable


def _missing_input(
    n: str,
    m: Metric,
    item: EvalItem,
    row: dict[str, Any],
    where: str,
    unreadable: dict[str, str],
) -> str | None:
    """The error row of metric ``n`` for an item that lacks what it needs; ``None`` when the
    metric can score it."""
    if m.needs_text and not item.text.strip():
        return (
            f'missing text: {where} has no "text" (what the audio should say; '
            f"{n} compares its transcript with it)"
        )
    if m.needs_speaker_prompt and not row.get("speaker_prompt"):
        return (
            f'missing speaker_prompt: {where} has no "speaker_prompt" (a '
            f"recording of the target speaker; {n} compares the voice with it)"
        )
    if m.needs_reference_audio and not row.get("reference_audio"):
        return (
            f'{NOT_APPLICABLE}: no reference_audio: {where} has no "reference_audio"'
            f" (a time-aligned recording of the same utterance; {n} compares with it)"
        )
    if m.needs_speaker_prompt and "speaker_prompt" in unreadable:
        return unreadable["speaker_prompt"]
    if m.needs_reference_audio and "reference_audio" in unreadable:
        return unreadable["reference_audio"]
    return None


def summarize(rows: list[dict[str, Any]], metrics: dict[str, Metric]) -> dict[str, Any]:
    """Per metric: mean and n of each output over scored items, n ok, n not applicable (and by
    reason: ``"not applicable: no reference_audio: …"`` counts as ``no reference_audio``), and
    error counts by reason category."""
    summary: dict[str, Any] = {"n_items": len(rows), "metrics": {}}
    for name, metric in metrics.items():
        values = [r["values"][name] for r in rows if name in r.get("values", {})]
        reasons = [r["errors"][name] for r in rows if name in r.get("errors", {})]
        na = Counter(
            (x.split(":", 2)[1].strip() if x.count(":") else "") or NOT_APPLICABLE
            for x in reasons
            if x.startswith(NOT_APPLICABLE)
        )
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
            "n_not_applicable": sum(na.values()),
            "not_applicable": dict(na),
            "n_errors": sum(errors.values()),
            "errors": dict(errors),
            "provenance": metric.model_provenance(),
        }
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """A plain-text table: one line per metric output, then error and not-applicable reasons."""
    lines = [f"{summary['n_items']} items"]
    header = f"{'metric':<20} {'output':<12} {'mean':>9} {'n':>6} {'n/a':>5} {'errors':>6}"
    lines += [header, "-" * len(header)]
    notes, na_notes = [], []
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
        for reason, count in sorted(m.get("not_applicable", {}).items(), key=lambda kv: -kv[1]):
            na_notes.append(f"  {name}: {count} x {reason}")
    if notes:
        lines += ["", "errors by reason:", *notes]
    if na_notes:
        lines += ["", "not applicable:", *na_notes]
    if any(" x missing " in x or " x no " in x for x in notes + na_notes):
        lines += ["", "manifest keys and the metrics that need them: ttsadapt score --help"]
    lines += _format_provenance(summary)
    return "\n".join(lines)


def _format_provenance(summary: dict[str, Any]) -> list[str]:
    """The scoring models' package versions and weight-file sha256 (first 12 hex digits)."""
    lines = []
    for name, m in summary["metrics"].items():
        prov = m.get("provenance") or {}
        packages = ", ".join(f"{k} {v}" for k, v in (prov.get("packages") or {}).items())
        files = [f"    {k} {v[:12]}" for k, v in (prov.get("files") or {}).items()]
        if packages or files:
            lines += [f"  {name}: {packages or '-'}", *files]
    if lines:
        lines[:0] = ["", "scoring models (package versions; sha256 of weight files, 12 digits):"]
    return lines
