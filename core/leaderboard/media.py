"""What the listening view plays and shows from outside the run folders, and where its audio goes.

:func:`read_eval_manifest` reads the evaluation sentences of a corpus manifest (text, speaker,
real recording, the speaker's prompt); :class:`AudioSink` puts audio in a folder beside the page,
into the page as data URIs, or nowhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, TTSAdaptError
from ..records import iter_jsonl_objects

__all__ = [
    "AUDIO_FOLDER",
    "AUDIO_MODES",
    "AudioSink",
    "ItemInfo",
    "encode_audio",
    "read_eval_manifest",
    "safe_name",
]

AUDIO_FOLDER = "leaderboard_audio"
AUDIO_MODES = ("folder", "embed", "none")


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
            prompts[str(spk)] = base / str(row["audio"])
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
                assert self.folder is not None  # __init__ refuses folder mode without one
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
