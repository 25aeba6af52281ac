"""Audio I/O: read any format libsndfile (or audioread) decodes, downmix, resample, write.

All audio inside ttsadapt is mono float32 in [-1, 1] with an explicit sample rate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import ItemError


def to_mono_float(audio: np.ndarray) -> np.ndarray:
    """Downmix (channels last, as soundfile returns them) and convert integer PCM to float32."""
    audio = np.asarray(audio)
    if np.issubdtype(audio.dtype, np.integer):
        info = np.iinfo(audio.dtype)
        audio = audio.astype(np.float32) / max(abs(info.min), info.max)
    audio = audio.astype(np.float32, copy=False)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    elif audio.ndim != 1:
        raise ItemError(f"expected 1-D or 2-D audio, got shape {audio.shape}")
    return audio


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling (soxr, high quality)."""
    if orig_sr == target_sr:
        return audio.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32)


def load_audio(path: Path | str, target_sr: int | None = None) -> tuple[np.ndarray, int]:
    """Read ``path`` as mono float32, resampled to ``target_sr`` when given.

    Raises :class:`ItemError` naming the file when it is missing or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise ItemError(f"audio file not found: {path}")
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as exc:  # noqa: BLE001 - libsndfile cannot read it; try audioread (mp3 etc.)
        try:
            import librosa

            audio, sr = librosa.load(str(path), sr=None, mono=False)
            audio = audio.T if audio.ndim == 2 else audio
        except Exception:  # noqa: BLE001
            raise ItemError(f"cannot decode audio file {path}: {exc}") from exc
    audio = to_mono_float(audio)
    if target_sr is not None and sr != target_sr:
        audio = resample(audio, sr, target_sr)
        sr = target_sr
    return audio, int(sr)


def write_audio(path: Path | str, audio: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM WAV atomically (temp file + rename)."""
    import io

    from .records import atomic_write_bytes

    buf = io.BytesIO()
    sf.write(
        buf,
        np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0),
        sample_rate,
        format="WAV",
        subtype="PCM_16",
    )
    atomic_write_bytes(Path(path), buf.getvalue())
