"""espeak-ng IPA phonemes the way NeuTTS feeds them to its LM.

Upstream NeuTTS phonemises with phonemizer's espeak backend (``en-us``, stress marks, punctuation
kept) and joins the words with single spaces. This module calls the ``espeak-ng`` binary directly
(no extra Python package): text is cut at punctuation, each stretch is phonemised, and the
punctuation marks are put back after the word they follow.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

from ttsadapt.errors import ConfigError, ItemError

_PUNCT = re.compile(r"([.,;:!?¡¿…—–\"“”«»()]+)")
_LANGUAGE_TO_VOICE = {"en": "en-us", "zh": "cmn", "pt": "pt-br"}


def espeak_voice(language: str) -> str:
    """The espeak-ng voice for a manifest language code (``en`` -> ``en-us``)."""
    return _LANGUAGE_TO_VOICE.get(language, language)


def _binary() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise ConfigError(
            "NeuTTS needs the espeak-ng binary for phonemes: install it (Debian/Ubuntu: "
            "apt-get install espeak-ng; macOS: brew install espeak-ng)"
        )
    return exe


@functools.lru_cache(maxsize=65536)
def _espeak(chunk: str, voice: str) -> str:
    proc = subprocess.run(
        [_binary(), "-q", "--ipa", "-v", voice, "--stdin"],
        input=chunk,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or "Unknown" in proc.stderr or "not found" in proc.stderr:
        raise ItemError(f"espeak-ng failed for voice '{voice}': {proc.stderr.strip()[:200]}")
    return " ".join(proc.stdout.split())


def phonemize(text: str, language: str = "en") -> str:
    """IPA phonemes with stress marks, words separated by one space, punctuation kept."""
    voice = espeak_voice(language)
    pieces: list[str] = []
    for part in _PUNCT.split(text):
        if not part.strip():
            continue
        if _PUNCT.fullmatch(part.strip()):
            if pieces:
                pieces[-1] += part.strip()
            else:
                pieces.append(part.strip())
            continue
        phones = _espeak(part.strip(), voice)
        if phones:
            pieces.append(phones)
    result = " ".join(pieces)
    if not any(ch.isalpha() for ch in result):
        raise ItemError(f"espeak-ng ({voice}) produced no phonemes for text {text!r}")
    return result
