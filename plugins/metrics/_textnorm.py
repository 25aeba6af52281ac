"""Language-aware text normalisation for CER/WER.

Both the reference and the ASR transcript go through :func:`normalize`.

English (primary subtag ``en``) uses Whisper's own English text normaliser
(``EnglishTextNormalizer`` from the ``whisper-normalizer`` package, OpenAI's code with its
``english.json`` British-to-American spelling map): numbers, currencies and ordinals written in
words become digits and symbols ("twenty dollars" and "$20" both read "$20", "the first" and
"1st" both "1st"), titles are spelled out ("Dr." reads "doctor"), contractions expanded, fillers
("uh", "hmm") and bracketed asides dropped. Whisper writes numbers as digits, while evaluation
texts often spell them out; without this a correct transcript of "It costs twenty dollars."
scores CER 0.61.

Every other language: Unicode NFC (NFKC would fold full-width forms too, which changes Japanese
text), case folding, punctuation and symbols replaced by spaces (apostrophes inside words kept,
so "don't" stays one word), whitespace collapsed. For languages written without spaces between
words (Thai, Lao, Khmer, Burmese, Japanese, Chinese) all whitespace is then removed, so CER
counts only characters of the text.
"""

from __future__ import annotations

import functools
import re
import unicodedata

# Primary language subtags of scripts written without spaces between words.
NO_WORD_SPACES = frozenset({"th", "lo", "km", "my", "ja", "zh", "yue", "wuu", "bo", "dz"})
# Languages whose headline error rate is CER (the above, plus Korean: its spaced units are
# phrases of several morphemes, so WER is harsh and unstable).
CER_HEADLINE = NO_WORD_SPACES | {"ko"}

_APOSTROPHES = "'\u2019\u02bc"
_WS = re.compile(r"\s+")


def primary_language(tag: str) -> str:
    return (tag or "").split("-", 1)[0].split("_", 1)[0].lower()


def _is_punct_or_symbol(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "PS"


@functools.lru_cache(maxsize=1)
def _english_normalizer():
    try:
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError as exc:
        raise ImportError(
            "English CER/WER needs Whisper's English text normaliser: pip install whisper-normalizer"
        ) from exc
    return EnglishTextNormalizer()


def normalize_english(text: str) -> str:
    """Whisper's English normalisation (see the module docstring), then NFC."""
    return unicodedata.normalize("NFC", _english_normalizer()(text))


def normalize(text: str, language: str) -> str:
    lang = primary_language(language)
    if lang == "en":
        return normalize_english(text)
    return normalize_basic(text, lang)


def normalize_basic(text: str, language: str) -> str:
    """The language-aware normalisation used for every language but English."""
    lang = primary_language(language)
    text = unicodedata.normalize("NFC", text).casefold()
    chars = []
    n = len(text)
    for i, ch in enumerate(text):
        if ch in _APOSTROPHES:
            inside = 0 < i < n - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
            chars.append("'" if inside else " ")
        elif _is_punct_or_symbol(ch):
            chars.append(" ")
        else:
            chars.append(ch)
    text = _WS.sub(" ", "".join(chars)).strip()
    if lang in NO_WORD_SPACES:
        text = text.replace(" ", "")
    return text


def headline_rate(language: str) -> str:
    """``"cer"`` or ``"wer"``: which error rate is the meaningful one for this language."""
    return "cer" if primary_language(language) in CER_HEADLINE else "wer"
