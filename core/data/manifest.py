"""Manifests: JSON Lines of clips, loaded with every line validated and every bad line explained.

One line is one clip::

    {"audio": "wavs/0001.wav", "text": "…", "speaker": "spk1", "language": "en"}

plus optional ``id`` (default: the audio path without its suffix), ``duration`` (seconds),
``split`` (``train`` / ``validation`` / ``eval``; ``val``/``valid``/``dev`` and ``test`` are read as
``validation`` and ``eval``), ``speaker_prompt`` (a recording of the clip's speaker to clone the
voice from), ``reference_audio`` (a time-aligned recording of the same utterance, for PESQ/STOI);
any other key is kept in ``Clip.extra`` (e.g. precomputed ``dnsmos`` scores). The old spelling
``ref_audio`` is read as ``speaker_prompt`` with a :class:`ManifestKeyWarning` (see
:data:`DEPRECATED_KEYS`). Relative paths are relative to the manifest's folder and may not
leave it through ``..``; absolute paths are allowed but must point at audio.

:func:`load_manifest` never drops a line silently: a line that cannot be used becomes a
:class:`QuarantineEntry` with its 1-based line number, a reason ``code`` and a readable ``reason``;
the other lines load. Reason codes:

=======================  ===========================================================  ==========
code                     meaning                                                      check mode
=======================  ===========================================================  ==========
not_utf8                 the line's bytes are not UTF-8                               all
malformed_json           the line is not JSON                                         all
not_object               the line is JSON but not an object                           all
missing_field            ``audio``/``text``/``speaker``/``language`` absent             all
bad_field                a field has the wrong type or value                          all
duplicate_id             the id was used on an earlier line (named)                   all
path_escapes             a relative path leaves the manifest's folder through ``..``  all
empty_text               the transcript is empty or whitespace                        all
unknown_language         the language tag is malformed, unknown, or not allowed       all
missing_file             the audio (or prompt / reference) file does not exist         header
unreadable_audio         no decoder can read the file (not audio, corrupt header)     header
truncated_audio          the file holds fewer samples than its header declares        header
zero_length              the audio has no samples                                     header
duration_mismatch        the line's ``duration`` disagrees with the file (> 10 %)      header
duration_out_of_window   the duration lies outside ``duration_window``               header
nan_inf                  samples are NaN or infinite                                  full
clipping                 more than ``max_clipped_fraction`` of samples at full scale   full
silent                   every sample is zero, or the peak is below ``silence_peak_dbfs``  full
=======================  ===========================================================  ==========

``check_audio`` is ``"none"`` (no file is opened), ``"header"`` (the library default: headers
only — fast, 10,000 lines in well under 10 s) or ``"full"`` (every file decoded and its samples
checked; so are a clip's prompt and reference recordings). Runs and the ``ttsadapt data``
commands use ``"full"`` with :data:`DEFAULT_MIN_DURATION_S` as the shortest usable clip (see
:data:`RUN_CHECKS`).

The full check decodes each file once: what it measured (samples decoded, NaN/inf count, share of
full-scale samples, peak) is kept in an :class:`AudioCheckCache` (SQLite under the cache root,
``$TTSADAPT_CACHE/audio_checks.sqlite``) keyed by the file's resolved path, size and modification
time, so a re-run decodes only files that changed. The thresholds are applied to the stored
measurements, so changing a threshold needs no new decode.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sqlite3
import struct
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..audio import load_audio
from ..errors import DataError, ItemError
from ..records import atomic_write_jsonl, atomic_write_text
from ..sqlite_wal import connect_wal
from ..types import Clip
from .acoustics import clipped_fraction
from .languages import language_tag_problem

CHECK_AUDIO_MODES = ("none", "header", "full")
REQUIRED_FIELDS = ("audio", "text", "speaker", "language")
KNOWN_FIELDS = {
    *("id", "audio", "text", "speaker", "language", "duration", "split"),
    *("speaker_prompt", "reference_audio"),
}
# One name per meaning in every manifest of the project (these corpus manifests, ``ttsadapt score``
# manifests, written manifests): ``speaker_prompt`` = a recording of the target speaker (the voice
# to clone, the target of speaker similarity); ``reference_audio`` = a time-aligned recording of the
# same utterance (PESQ/STOI). Old spellings are read under the new name, with a warning.
DEPRECATED_KEYS = {"ref_audio": "speaker_prompt"}  # as in VoxCPM's fine-tuning manifests
_KEY_MEANINGS = {
    "speaker_prompt": "a recording of the target speaker to clone and compare the voice with",
    "reference_audio": "a time-aligned recording of the same utterance, for PESQ/STOI",
}
_warned_keys: set[tuple[str, str]] = set()


class ManifestKeyWarning(FutureWarning):
    """A manifest spells a key the old way (a FutureWarning, so users see it by default)."""


def rename_deprecated_keys(
    obj: dict[str, Any], aliases: dict[str, str], path: Path, line: int
) -> tuple[dict[str, Any], dict[str, str]]:
    """``obj`` with every old key of ``aliases`` (``{old: new}``) under its new name, and
    ``{new: old}`` for the keys renamed. The first use of an old key in a file warns
    (:class:`ManifestKeyWarning` at ``path``:``line``, naming the new key); later lines do not.
    Raises ``ValueError`` when the line has both spellings."""
    renamed: dict[str, str] = {}
    for old, new in aliases.items():
        if old not in obj:
            continue
        if new in obj:
            raise ValueError(
                f"the line has both {new!r} and its deprecated spelling {old!r}; keep only {new!r}"
            )
        renamed[new] = old
        once = (os.path.abspath(path), old)
        if once not in _warned_keys:
            _warned_keys.add(once)
            warnings.warn_explicit(
                f"manifest key {old!r} is deprecated: write {new!r} "
                f"({_KEY_MEANINGS.get(new, new)}); read as {new!r} on every line of this file "
                "(warned once per file)",
                ManifestKeyWarning,
                filename=str(path),
                lineno=line,
                module="ttsadapt.data.manifest",
            )
    if renamed:
        obj = {aliases.get(k, k): v for k, v in obj.items()}
    return obj, renamed


SPLITS = ("train", "validation", "eval")
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "dev": "validation",
    "eval": "eval",
    "evaluation": "eval",
    "test": "eval",
}
DEFAULT_MAX_CLIPPED_FRACTION = 0.01
DEFAULT_MIN_DURATION_S = 0.3  # shorter clips hold too little speech to train or score on
DEFAULT_SILENCE_PEAK_DBFS = -60.0  # a clip whose loudest sample is quieter holds no speech
DURATION_TOLERANCE = 0.10  # relative; and at least 0.1 s
AUDIO_CHECK_VERSION = 1  # bump when what the full check measures changes (misses old cache rows)
AUDIO_CHECK_CACHE_FILE = "audio_checks.sqlite"
RUN_CHECKS: dict[str, Any] = {
    "check_audio": "full",
    "duration_window": (DEFAULT_MIN_DURATION_S, None),
    "max_clipped_fraction": DEFAULT_MAX_CLIPPED_FRACTION,
    "silence_peak_dbfs": DEFAULT_SILENCE_PEAK_DBFS,
}
"""The checks every clip a run trains, validates or evaluates on passes (and the data commands'
defaults): full decode, at least :data:`DEFAULT_MIN_DURATION_S` seconds."""
log = logging.getLogger(__name__)


@dataclass
class QuarantineEntry:
    """A manifest line set aside: where it is, what it is, and why."""

    line: int
    id: str | None
    reason: str
    path: str | None
    code: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "id": self.id,
            "code": self.code,
            "reason": self.reason,
            "path": self.path,
        }


@dataclass
class ManifestLoad:
    """The usable clips of a manifest and the quarantine of the rest."""

    clips: list[Clip]
    quarantine: list[QuarantineEntry]
    path: Path
    lines: int = 0  # non-empty lines read
    check_audio: str = "header"
    audio_check: dict[str, Any] | None = None  # settings + files decoded / taken from the cache

    def counts(self) -> dict[str, int]:
        """Quarantined lines by reason code."""
        return dict(sorted(Counter(q.code for q in self.quarantine).items()))

    def report(self) -> dict[str, Any]:
        """Plain-data summary for a run's provenance."""
        return {
            "manifest": str(self.path),
            "check_audio": self.check_audio,
            "lines": self.lines,
            "loaded": len(self.clips),
            "quarantined": len(self.quarantine),
            "quarantine_by_reason": self.counts(),
            "hours": round(sum(c.duration_s or 0.0 for c in self.clips) / 3600.0, 6),
            **({"audio_check": self.audio_check} if self.audio_check else {}),
        }

    def write_quarantine(self, path: Path) -> None:
        """Write the quarantine as JSON Lines (one entry a line, in line order)."""
        atomic_write_jsonl(Path(path), (q.as_dict() for q in self.quarantine))


class _LineProblem(Exception):
    def __init__(self, code: str, reason: str, path: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.path = path


# --------------------------------------------------------------------------- audio checks


def _wav_truncation(path: Path, file_size: int) -> str | None:
    """For RIFF/WAVE files: compare the ``data`` chunk's declared size with the bytes present."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            pos = 12
            while pos + 8 <= file_size:
                fh.seek(pos)
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"data":
                    available = file_size - (pos + 8)
                    if size in (0, 0xFFFFFFFF):  # streamed WAV: size never filled in
                        return None
                    if size > available:
                        return (
                            f"WAV data chunk declares {size} bytes but only {available} follow "
                            f"(file cut short)"
                        )
                    return None
                pos += 8 + size + (size & 1)
    except OSError:
        return None
    return None


@dataclass
class AudioHeader:
    frames: int
    sample_rate: int
    channels: int
    format: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def read_audio_header(path: Path) -> AudioHeader:
    """Header of an audio file; raises ``_LineProblem`` naming what is wrong with it."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _LineProblem("missing_file", f"audio file not found: {path}", str(path)) from None
    except OSError as exc:
        raise _LineProblem("unreadable_audio", f"cannot stat {path}: {exc}", str(path)) from None
    if not path.is_file():
        raise _LineProblem("unreadable_audio", f"not a regular file: {path}", str(path))
    if size == 0:
        raise _LineProblem("zero_length", f"audio file is empty (0 bytes): {path}", str(path))
    try:
        info = sf.info(str(path))
    except Exception as exc:  # noqa: BLE001 - libsndfile's message is the reason
        msg = str(exc).split("\n")[0].strip()
        raise _LineProblem(
            "unreadable_audio", f"cannot read audio header of {path}: {msg}", str(path)
        ) from None
    truncated = _wav_truncation(path, size)
    if truncated:
        raise _LineProblem("truncated_audio", f"{path}: {truncated}", str(path))
    header = AudioHeader(int(info.frames), int(info.samplerate), int(info.channels), info.format)
    if header.frames <= 0:
        raise _LineProblem("zero_length", f"audio has no samples: {path}", str(path))
    return header


class AudioCheckCache:
    """What the full check measured per audio file, keyed by (resolved path, size, mtime).

    One SQLite file (WAL mode: concurrent runs may share it; each flush is one transaction).
    A file that changes (new size or modification time) misses and is decoded again. When the
    cache cannot be opened or written (read-only disk, a damaged file) the check still runs,
    decoding every file, and one warning says why.
    """

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            from ..paths import cache_root

            path = cache_root() / AUDIO_CHECK_CACHE_FILE
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[str, str, str, float]] = []
        self._failed = False

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is None and not self._failed:
            try:
                self._db = connect_wal(
                    self.path,
                    "CREATE TABLE IF NOT EXISTS checks (key TEXT PRIMARY KEY, path TEXT, "
                    "payload TEXT NOT NULL, created REAL)",
                )
            except (OSError, sqlite3.Error) as exc:
                self._disable(exc)
        return self._db

    def _disable(self, exc: Exception) -> None:
        self._failed = True
        self._db = None
        log.warning(
            "audio check cache %s is unusable (%s); every file is decoded without it",
            self.path,
            exc,
        )

    @staticmethod
    def key(path: Path, st: os.stat_result) -> str:
        ident = f"v{AUDIO_CHECK_VERSION}|{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}"
        return hashlib.sha256(ident.encode()).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        db = self._connect()
        if db is None:
            return None
        try:
            row = db.execute("SELECT payload FROM checks WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            self._disable(exc)
            return None
        if row is None:
            for k, _, payload, _ in self._pending:
                if k == key:
                    return json.loads(payload)
            return None
        return json.loads(row[0])

    def put(self, key: str, path: Path, measured: dict[str, Any]) -> None:
        if self._failed:
            return
        self._pending.append((key, str(path), json.dumps(measured), time.time()))
        if len(self._pending) >= 256:
            self.flush()

    def flush(self) -> None:
        db = self._connect()
        if db is None or not self._pending:
            self._pending.clear()
            return
        try:
            with db:
                db.executemany("INSERT OR REPLACE INTO checks VALUES (?, ?, ?, ?)", self._pending)
        except sqlite3.Error as exc:
            self._disable(exc)
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None


def measure_samples(audio: np.ndarray) -> dict[str, Any]:
    """What the full check needs from decoded samples (channels last): counts, clipping, peak."""
    audio = np.asarray(audio, dtype=np.float32)
    frames = int(audio.shape[0]) if audio.ndim else 0
    finite = np.isfinite(audio)
    nonfinite = int(audio.size - np.count_nonzero(finite))
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio.reshape(-1)
    if nonfinite:
        mono = mono[np.isfinite(mono)]
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    return {
        "frames": frames,
        "samples": int(audio.size),
        "nonfinite": nonfinite,
        "clipped_fraction": clipped_fraction(mono) if mono.size else 0.0,
        "peak": peak,
    }


def judge_samples(
    measured: dict[str, Any],
    path: Path,
    max_clipped_fraction: float = DEFAULT_MAX_CLIPPED_FRACTION,
    silence_peak_dbfs: float | None = DEFAULT_SILENCE_PEAK_DBFS,
    header_frames: int | None = None,
    header_format: str = "WAV",
) -> None:
    """Raise ``_LineProblem`` when measured samples are unusable: the file decodes short of its
    header, or the samples are NaN/inf, clipped, all zero or below ``silence_peak_dbfs``."""
    if measured.get("decode_error"):
        raise _LineProblem(
            "unreadable_audio", f"cannot decode {path}: {measured['decode_error']}", str(path)
        )
    got = int(measured["frames"])
    if header_frames is not None:
        # compressed formats may declare an approximate length; allow a little slack
        lossless = ("WAV", "WAVEX", "RF64", "W64", "AIFF", "FLAC")
        slack = 0 if header_format in lossless else 2048
        if got + slack < header_frames:
            raise _LineProblem(
                "truncated_audio",
                f"{path}: decoded {got} samples, header declares {header_frames} (file cut short)",
                str(path),
            )
    if measured["samples"] == 0:
        raise _LineProblem("zero_length", f"audio decodes to no samples: {path}", str(path))
    if measured["nonfinite"]:
        raise _LineProblem(
            "nan_inf",
            f"{measured['nonfinite']} of {measured['samples']} samples are NaN or infinite: {path}",
            str(path),
        )
    frac = float(measured["clipped_fraction"])
    if frac > max_clipped_fraction:
        raise _LineProblem(
            "clipping",
            f"heavy clipping: {frac:.1%} of samples at full scale "
            f"(allowed {max_clipped_fraction:.1%}): {path}",
            str(path),
        )
    peak = float(measured["peak"])
    if peak == 0.0:
        raise _LineProblem("silent", f"every sample is zero: {path}", str(path))
    if silence_peak_dbfs is not None and 20.0 * math.log10(peak) < silence_peak_dbfs:
        raise _LineProblem(
            "silent",
            f"near-silent: peak level {20.0 * math.log10(peak):.1f} dBFS is below "
            f"{silence_peak_dbfs:g} dBFS: {path}",
            str(path),
        )


def check_samples(
    audio: np.ndarray,
    path: Path,
    max_clipped_fraction: float = DEFAULT_MAX_CLIPPED_FRACTION,
    silence_peak_dbfs: float | None = DEFAULT_SILENCE_PEAK_DBFS,
) -> None:
    """Raise ``_LineProblem`` when decoded samples are unusable (NaN/inf, clipped, silent)."""
    judge_samples(measure_samples(audio), path, max_clipped_fraction, silence_peak_dbfs)


def _decode_and_measure(path: Path) -> dict[str, Any]:
    try:
        audio, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001
        try:
            audio, _ = load_audio(path)
        except ItemError:
            msg = str(exc).split("\n")[0]
            return {"decode_error": msg}
    return measure_samples(audio)


@dataclass
class _CheckSettings:
    check_audio: str
    duration_window: tuple[float | None, float | None]
    max_clipped_fraction: float
    silence_peak_dbfs: float | None
    cache: AudioCheckCache | None
    decoded: int = 0
    cached: int = 0
    seconds: float = 0.0

    def describe(self) -> dict[str, Any]:
        lo, hi = self.duration_window
        return {
            "mode": self.check_audio,
            "min_duration_s": lo,
            "max_duration_s": hi,
            "max_clipped_fraction": self.max_clipped_fraction,
            "silence_peak_dbfs": self.silence_peak_dbfs,
            "files_decoded": self.decoded,
            "files_from_cache": self.cached,
            "cache": str(self.cache.path) if self.cache is not None else None,
            "seconds": round(self.seconds, 3),
        }


def _full_check(path: Path, header: AudioHeader, settings: _CheckSettings) -> None:
    """Decode ``path`` (or take its measurements from the cache) and judge the samples."""
    t0 = time.perf_counter()
    measured = None
    key = None
    if settings.cache is not None:
        try:
            key = AudioCheckCache.key(path, path.stat())
        except OSError:
            key = None
        if key is not None:
            measured = settings.cache.get(key)
    if measured is None:
        measured = _decode_and_measure(path)
        settings.decoded += 1
        if key is not None and settings.cache is not None:
            settings.cache.put(key, path, measured)
    else:
        settings.cached += 1
    settings.seconds += time.perf_counter() - t0
    judge_samples(
        measured,
        path,
        settings.max_clipped_fraction,
        settings.silence_peak_dbfs,
        header.frames,
        header.format,
    )


# --------------------------------------------------------------------------- lines


def _resolve(value: Any, field_name: str, base: Path, base_norm: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise _LineProblem("bad_field", f"'{field_name}' must be a non-empty path string")
    p = Path(value)
    if p.is_absolute():
        return p
    joined = os.path.normpath(os.path.join(base_norm, value))
    if joined != base_norm and not joined.startswith(base_norm + os.sep):
        raise _LineProblem(
            "path_escapes",
            f"'{field_name}' path {value!r} leaves the manifest's folder {base} through '..'",
            value,
        )
    return Path(joined)


def _parse_line(
    obj: Any,
    base: Path,
    base_norm: str,
    require_text: bool,
    languages: set[str] | None,
) -> Clip:
    if not isinstance(obj, dict):
        raise _LineProblem("not_object", f"expected a JSON object, got {type(obj).__name__}")
    missing = [f for f in REQUIRED_FIELDS if f not in obj]
    if not require_text and "text" in missing:
        missing.remove("text")
    if missing:
        raise _LineProblem("missing_field", f"missing required field(s): {', '.join(missing)}")
    audio_field = obj["audio"]
    audio = _resolve(audio_field, "audio", base, base_norm)
    clip_id = obj.get("id")
    if clip_id is None:
        clip_id = os.path.splitext(str(audio_field))[0]
    elif isinstance(clip_id, int) and not isinstance(clip_id, bool):
        clip_id = str(clip_id)
    if not isinstance(clip_id, str) or not clip_id:
        raise _LineProblem("bad_field", f"'id' must be a non-empty string, got {clip_id!r}")
    text = obj.get("text", "")
    if not isinstance(text, str):
        raise _LineProblem("bad_field", f"'text' must be a string, got {type(text).__name__}")
    if require_text and not text.strip():
        raise _LineProblem("empty_text", "transcript 'text' is empty")
    speaker = obj["speaker"]
    if isinstance(speaker, int) and not isinstance(speaker, bool):
        speaker = str(speaker)
    if not isinstance(speaker, str) or not speaker.strip():
        raise _LineProblem("bad_field", f"'speaker' must be a non-empty string, got {speaker!r}")
    language = obj["language"]
    problem = language_tag_problem(language, languages)
    if problem:
        raise _LineProblem("unknown_language", problem)
    duration = _parse_duration(obj.get("duration"))
    split = _parse_split(obj.get("split"))
    prompt, reference = (
        None if obj.get(key) is None else _resolve(obj[key], key, base, base_norm)
        for key in ("speaker_prompt", "reference_audio")
    )
    extra = {k: v for k, v in obj.items() if k not in KNOWN_FIELDS}
    return Clip(
        id=clip_id,
        audio=audio,
        text=text.strip(),
        speaker=speaker.strip(),
        language=language,
        duration_s=duration,
        split=split,
        speaker_prompt=prompt,
        reference_audio=reference,
        extra=extra,
    )


def _parse_duration(duration: Any) -> float | None:
    """A line's optional ``duration``: seconds, finite and >= 0."""
    if duration is None:
        return None
    if isinstance(duration, bool) or not isinstance(duration, (int, float)):
        raise _LineProblem("bad_field", f"'duration' must be seconds, got {duration!r}")
    if not np.isfinite(duration) or duration < 0:
        raise _LineProblem("bad_field", f"'duration' must be finite and >= 0, got {duration}")
    return float(duration)


def _parse_split(split: Any) -> str | None:
    """A line's optional ``split``, its aliases folded to one of :data:`SPLITS`."""
    if split is None:
        return None
    norm = _SPLIT_ALIASES.get(str(split).lower()) if isinstance(split, str) else None
    if norm is None:
        raise _LineProblem(
            "bad_field", f"'split' must be one of {', '.join(SPLITS)}, got {split!r}"
        )
    return norm


def _companion_audio(clip: Clip) -> list[tuple[str, Path]]:
    """Other recordings a clip brings along (voice prompt, intrusive reference), by field."""
    found: list[tuple[str, Path]] = []
    for name in ("speaker_prompt", "ref_audio", "reference_audio"):
        value = getattr(clip, name, None)
        if isinstance(value, Path) and value not in [p for _, p in found]:
            found.append((name, value))
    return found


def _check_clip_audio(clip: Clip, settings: _CheckSettings) -> None:
    lo, hi = settings.duration_window
    if settings.check_audio == "none":
        if clip.duration_s is not None:
            _check_window(clip.duration_s, lo, hi, clip.audio)
        return
    header = read_audio_header(clip.audio)
    actual = header.duration_s
    if clip.duration_s is not None:
        diff = abs(clip.duration_s - actual)
        if diff > max(0.1, DURATION_TOLERANCE * actual):
            raise _LineProblem(
                "duration_mismatch",
                f"line says duration {clip.duration_s:.3f} s but {clip.audio} lasts {actual:.3f} s",
                str(clip.audio),
            )
    clip.duration_s = actual
    clip.extra.setdefault("sample_rate", header.sample_rate)
    companions = []
    for name, extra_path in _companion_audio(clip):
        try:
            companions.append((name, extra_path, read_audio_header(extra_path)))
        except _LineProblem as problem:
            raise _LineProblem(problem.code, f"{name}: {problem.reason}", problem.path) from None
    _check_window(actual, lo, hi, clip.audio)
    if settings.check_audio == "full":
        _full_check(clip.audio, header, settings)
        for name, extra_path, extra_header in companions:
            try:
                _full_check(extra_path, extra_header, settings)
            except _LineProblem as problem:
                raise _LineProblem(
                    problem.code, f"{name}: {problem.reason}", problem.path
                ) from None


def _check_window(duration: float, lo: float | None, hi: float | None, path: Path) -> None:
    if lo is not None and duration < lo:
        raise _LineProblem(
            "duration_out_of_window",
            f"too short: {duration:.3f} s, the minimum is {lo:g} s: {path}",
            str(path),
        )
    if hi is not None and duration > hi:
        raise _LineProblem(
            "duration_out_of_window",
            f"too long: {duration:.3f} s, the maximum is {hi:g} s: {path}",
            str(path),
        )


def _settings(
    check_audio: str,
    duration_window: tuple[float | None, float | None],
    max_clipped_fraction: float,
    silence_peak_dbfs: float | None,
    cache: AudioCheckCache | None,
) -> _CheckSettings:
    if check_audio not in CHECK_AUDIO_MODES:
        raise ValueError(f"check_audio must be one of {CHECK_AUDIO_MODES}, got {check_audio!r}")
    lo, hi = duration_window
    return _CheckSettings(check_audio, (lo, hi), max_clipped_fraction, silence_peak_dbfs, cache)


def load_manifest(
    path: Path,
    *,
    check_audio: str = "header",
    duration_window: tuple[float | None, float | None] = (None, None),
    languages: set[str] | None = None,
    require_text: bool = True,
    max_clipped_fraction: float = DEFAULT_MAX_CLIPPED_FRACTION,
    silence_peak_dbfs: float | None = DEFAULT_SILENCE_PEAK_DBFS,
    cache: AudioCheckCache | None = None,
) -> ManifestLoad:
    """Load and validate a JSON Lines manifest.

    :param path: the manifest; relative audio paths are relative to its folder.
    :param check_audio: ``"none"``, ``"header"`` (default) or ``"full"`` (see the module doc;
        runs and the data commands use ``"full"``: ``load_manifest(path, **RUN_CHECKS)``).
    :param duration_window: ``(min_s, max_s)``; either may be ``None``.
    :param languages: when given, the only language tags allowed (a tag's primary subtag counts).
    :param require_text: set ``False`` for reference recordings without transcripts.
    :param max_clipped_fraction: in ``"full"`` mode, the share of full-scale samples tolerated.
    :param silence_peak_dbfs: in ``"full"`` mode, a clip whose peak is quieter is ``silent``
        (``None``: only all-zero clips are).
    :param cache: in ``"full"`` mode, where decoded files' measurements are kept (``None``:
        decode every file); see :class:`AudioCheckCache`.
    :raises DataError: only when the manifest file itself is missing or unreadable.
    """
    path = Path(path)
    settings = _settings(
        check_audio, duration_window, max_clipped_fraction, silence_peak_dbfs, cache
    )
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"manifest not found: {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read manifest {path}: {exc}") from None
    base = path.parent.absolute()
    base_norm = os.path.normpath(str(base))
    clips: list[Clip] = []
    quarantine: list[QuarantineEntry] = []
    first_line: dict[str, int] = {}
    n_lines = 0
    try:
        for lineno, raw_line in enumerate(raw.split(b"\n"), start=1):
            if not raw_line.strip():
                continue
            n_lines += 1
            clip_id: str | None = None
            audio_field: str | None = None
            try:
                try:
                    text_line = raw_line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise _LineProblem(
                        "not_utf8",
                        f"line is not valid UTF-8 (byte 0x{raw_line[exc.start]:02x} at column "
                        f"{exc.start + 1}); save the manifest as UTF-8",
                    ) from None
                if lineno == 1:
                    text_line = text_line.lstrip("\ufeff")
                try:
                    obj = json.loads(text_line)
                except json.JSONDecodeError as exc:
                    raise _LineProblem(
                        "malformed_json", f"malformed JSON: {exc.msg} at column {exc.colno}"
                    ) from None
                if isinstance(obj, dict):
                    cid = obj.get("id")
                    clip_id = str(cid) if cid is not None else None
                    af = obj.get("audio")
                    audio_field = af if isinstance(af, str) else None
                    try:
                        obj, _ = rename_deprecated_keys(obj, DEPRECATED_KEYS, path, lineno)
                    except ValueError as exc:
                        raise _LineProblem("bad_field", str(exc)) from None
                clip = _parse_line(obj, base, base_norm, require_text, languages)
                clip_id = clip.id
                if clip.id in first_line:
                    raise _LineProblem(
                        "duplicate_id",
                        f"duplicate id {clip.id!r} (first used on line {first_line[clip.id]})",
                    )
                first_line[clip.id] = lineno
                _check_clip_audio(clip, settings)
            except _LineProblem as problem:
                quarantine.append(
                    QuarantineEntry(
                        line=lineno,
                        id=clip_id,
                        reason=problem.reason,
                        path=problem.path or audio_field,
                        code=problem.code,
                    )
                )
                continue
            clip.extra["line"] = lineno
            clips.append(clip)
    finally:
        if cache is not None:
            cache.flush()
    return ManifestLoad(clips, quarantine, path, n_lines, check_audio, settings.describe())


def check_clips(
    clips: Sequence[Clip],
    *,
    check_audio: str = "full",
    duration_window: tuple[float | None, float | None] = (DEFAULT_MIN_DURATION_S, None),
    max_clipped_fraction: float = DEFAULT_MAX_CLIPPED_FRACTION,
    silence_peak_dbfs: float | None = DEFAULT_SILENCE_PEAK_DBFS,
    cache: AudioCheckCache | None = None,
) -> tuple[list[Clip], list[QuarantineEntry]]:
    """The audio checks of :func:`load_manifest` on clips already in memory (e.g. clips a recipe
    brought in from another manifest). Returns the usable clips and, for the rest, entries with
    the clip's manifest line (``extra["line"]``, 0 when unknown), id, path and reason."""
    settings = _settings(
        check_audio, duration_window, max_clipped_fraction, silence_peak_dbfs, cache
    )
    kept: list[Clip] = []
    rejected: list[QuarantineEntry] = []
    try:
        for clip in clips:
            try:
                _check_clip_audio(clip, settings)
            except _LineProblem as problem:
                rejected.append(
                    QuarantineEntry(
                        line=int(clip.extra.get("line") or 0),
                        id=clip.id,
                        reason=problem.reason,
                        path=problem.path or str(clip.audio),
                        code=problem.code,
                    )
                )
                continue
            kept.append(clip)
    finally:
        if cache is not None:
            cache.flush()
    return kept, rejected


# --------------------------------------------------------------------------- reading & writing


def load_clip_audio(clip: Clip, sample_rate: int | None = None) -> np.ndarray:
    """The clip's audio as mono float32, resampled (soxr) to ``sample_rate`` when given.

    Raises :class:`ttsadapt.errors.ItemError` naming the file when it cannot be decoded.
    """
    audio, _ = load_audio(clip.audio, sample_rate)
    return audio


def clip_to_line(clip: Clip, manifest_dir: Path) -> dict[str, Any]:
    """The manifest line of ``clip``, its paths relative to ``manifest_dir`` when inside it."""

    def rel(p: Path) -> str:
        try:
            r = os.path.relpath(p, manifest_dir)
        except ValueError:  # another drive on Windows
            return str(p)
        return str(p) if r.startswith("..") else Path(r).as_posix()

    line: dict[str, Any] = {
        "id": clip.id,
        "audio": rel(clip.audio),
        "text": clip.text,
        "speaker": clip.speaker,
        "language": clip.language,
    }
    if clip.duration_s is not None:
        line["duration"] = round(float(clip.duration_s), 4)
    if clip.split is not None:
        line["split"] = clip.split
    for key in ("speaker_prompt", "reference_audio"):
        if getattr(clip, key) is not None:
            line[key] = rel(getattr(clip, key))
    for k, v in clip.extra.items():
        if k not in ("line", "sample_rate") and k not in line:
            line[k] = v
    return line


def write_manifest(path: Path, clips: Iterable[Clip]) -> Path:
    """Write ``clips`` as a manifest (atomically); audio paths relative to its folder."""
    path = Path(path)
    base = path.parent.absolute()
    rows = [json.dumps(clip_to_line(c, base), ensure_ascii=False) for c in clips]
    atomic_write_text(path, "".join(r + "\n" for r in rows))
    return path


def summarize_clips(clips: Sequence[Clip]) -> dict[str, Any]:
    """Clips and hours by speaker and by language (for reports)."""
    by_speaker: dict[str, dict[str, float]] = {}
    by_language: dict[str, dict[str, float]] = {}
    for c in clips:
        for table, key in ((by_speaker, c.speaker), (by_language, c.language)):
            row = table.setdefault(key, {"clips": 0, "hours": 0.0})
            row["clips"] += 1
            row["hours"] += (c.duration_s or 0.0) / 3600.0
    for table in (by_speaker, by_language):
        for row in table.values():
            row["hours"] = round(row["hours"], 6)
    total_h = sum(r["hours"] for r in by_language.values())
    return {
        "clips": len(clips),
        "hours": round(total_h, 6),
        "by_speaker": dict(sorted(by_speaker.items())),
        "by_language": dict(sorted(by_language.items())),
    }


__all__ = [
    "CHECK_AUDIO_MODES",
    "DEFAULT_MIN_DURATION_S",
    "DEPRECATED_KEYS",
    "RUN_CHECKS",
    "SPLITS",
    "AudioCheckCache",
    "ManifestKeyWarning",
    "ManifestLoad",
    "QuarantineEntry",
    "check_clips",
    "clip_to_line",
    "load_clip_audio",
    "load_manifest",
    "read_audio_header",
    "rename_deprecated_keys",
    "summarize_clips",
    "write_manifest",
]
