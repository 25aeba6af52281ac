"""Text → Kokoro token ids: espeak-ng IPA rewritten into the phoneme set Kokoro v1.0 was trained on.

Kokoro reads misaki's phoneme alphabet, in which a diphthong or an affricate is one symbol
(``eɪ`` → ``A``, ``aɪ`` → ``I``, ``aʊ`` → ``W``, ``ɔɪ`` → ``Y``, ``oʊ`` → ``O``, ``dʒ`` → ``ʤ``,
``tʃ`` → ``ʧ``), ``ɚ`` is spelt ``əɹ``, the flap is ``T`` and American English carries no length
marks. ttsadapt phonemises with the espeak-ng binary (the same front end as the other backbones),
then applies those rewrites for English; other languages keep espeak-ng's IPA with only the
one-symbol affricates and diphthongs. Symbols outside Kokoro's vocabulary are dropped and counted.
"""

from __future__ import annotations

from collections.abc import Mapping

from ttsadapt.errors import ItemError

from .._phonemes import phonemize

MAX_TOKENS = 510  # the model's 512 positions minus the two pad tokens around the text

_COMMON = {"dʒ": "ʤ", "tʃ": "ʧ", "eɪ": "A", "aɪ": "I", "aʊ": "W", "ɔɪ": "Y", "oʊ": "O"}
_ENGLISH = {
    **_COMMON,
    "ʔn̩": "tn",
    "ɚ": "əɹ",
    "ɝ": "ɜɹ",
    "ɜː": "ɜɹ",
    "ɪə": "iə",
    "ɾ": "T",
    "ʔ": "t",
    "r": "ɹ",
    "x": "k",
    "ç": "k",
    "ɐ": "ə",
    "ɬ": "l",
    "e": "A",
    "ː": "",
    "\u0303": "",
}


def _rewrite(phonemes: str, table: Mapping[str, str]) -> str:
    for old in sorted(table, key=len, reverse=True):
        phonemes = phonemes.replace(old, table[old])
    return phonemes


def kokoro_phonemes(text: str, language: str) -> str:
    """``text`` as the phoneme string Kokoro reads (see the module docstring)."""
    ipa = phonemize(text, language)
    return _rewrite(ipa, _ENGLISH if language.split("-")[0] == "en" else _COMMON)


def token_ids(phonemes: str, vocab: Mapping[str, int]) -> tuple[list[int], int]:
    """(ids, number of symbols not in the vocabulary); :class:`ItemError` if nothing is left or the
    text is longer than the model's context."""
    ids = [vocab[ch] for ch in phonemes if ch in vocab]
    dropped = sum(1 for ch in phonemes if ch not in vocab)
    if not ids:
        raise ItemError(f"no Kokoro phonemes in {phonemes!r}")
    if len(ids) > MAX_TOKENS:
        raise ItemError(
            f"{len(ids)} phonemes: longer than Kokoro's {MAX_TOKENS}; split the text into sentences"
        )
    return ids, dropped
