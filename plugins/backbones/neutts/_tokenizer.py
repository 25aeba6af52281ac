"""NeuTTS's special tokens, its prompt format, and a small character tokenizer for the tiny model.

The prompt (upstream ``neuttsair/neutts.py``, ``_apply_chat_template``)::

    user: Convert the text to speech:<|TEXT_PROMPT_START|>{phones}<|TEXT_PROMPT_END|>
    assistant:<|SPEECH_GENERATION_START|>{<|speech_N|> ...}<|SPEECH_GENERATION_END|>

Speech codes are ``<|speech_0|>`` ... ``<|speech_{K-1}|>`` with contiguous token ids, so a code maps
to an id by adding the id of ``<|speech_0|>``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from ttsadapt.errors import ConfigError

TEXT_PROMPT_START = "<|TEXT_PROMPT_START|>"
TEXT_PROMPT_END = "<|TEXT_PROMPT_END|>"
SPEECH_START = "<|SPEECH_GENERATION_START|>"
SPEECH_END = "<|SPEECH_GENERATION_END|>"
TEXT_REPLACE = "<|TEXT_REPLACE|>"
SPEECH_REPLACE = "<|SPEECH_REPLACE|>"
PAD = "<|endoftext|>"
UNK = "<unk>"
SPECIALS = (PAD, UNK, TEXT_PROMPT_START, TEXT_PROMPT_END, SPEECH_START, SPEECH_END)
USER_PREFIX = "user: Convert the text to speech:"
ASSISTANT_PREFIX = "\nassistant:"

# IPA symbols espeak-ng emits (plus stress/length marks); ASCII printable covers the rest.
_IPA = (
    "ɐɑɒæɓʙβɔɕçɗɖðʤəɘɚɛɜɝɞɟʄɡɠɢʛɦɧħɥʜɨɪʝɭɬɫɮʟɱɯɰŋɳɲɴøɵɸθœɶʘɹɺɾɻʀʁɽʂʃʈʧʉʊʋⱱʌɣɤʍχʎʏʑʐʒʔʡʕʢǀǁǂǃ"
    "ˈˌːˑʼʴʰʱʲʷˠˤ˞̩̯̃̈̊ᵻᵿ̪͡"
)


def speech_token(code: int) -> str:
    return f"<|speech_{code}|>"


def build_tiny_tokenizer(codebook_size: int):
    """A character-level ``PreTrainedTokenizerFast`` with NeuTTS's special and speech tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list(dict.fromkeys(string.printable[:95] + _IPA + "\n"))
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    # speech tokens live in the vocabulary (contiguous ids); they are never parsed from strings
    for code in range(codebook_size):
        vocab[speech_token(code)] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=PAD,
        unk_token=UNK,
        additional_special_tokens=list(SPECIALS[2:]),
    )
    return fast


@dataclass
class PromptIds:
    """Token ids of the fixed parts of NeuTTS's prompt, resolved once per tokenizer."""

    user_prefix: list[int]
    assistant_prefix: list[int]
    text_start: int
    text_end: int
    speech_start: int
    speech_end: int
    speech_offset: int
    codebook_size: int
    pad: int

    @classmethod
    def from_tokenizer(cls, tokenizer, codebook_size: int) -> PromptIds:
        ids = {}
        for name in (TEXT_PROMPT_START, TEXT_PROMPT_END, SPEECH_START, SPEECH_END):
            tid = tokenizer.convert_tokens_to_ids(name)
            if tid is None or tid == tokenizer.unk_token_id:
                raise ConfigError(f"the NeuTTS tokenizer has no special token {name}")
            ids[name] = tid
        first = tokenizer.convert_tokens_to_ids(speech_token(0))
        last = tokenizer.convert_tokens_to_ids(speech_token(codebook_size - 1))
        if first is None or last is None or last - first != codebook_size - 1:
            raise ConfigError(
                f"the NeuTTS tokenizer's speech tokens <|speech_0|>..<|speech_{codebook_size - 1}|> "
                f"are missing or not contiguous (ids {first}..{last}); check `codebook_size`"
            )
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        return cls(
            user_prefix=tokenizer.encode(USER_PREFIX, add_special_tokens=False),
            assistant_prefix=tokenizer.encode(ASSISTANT_PREFIX, add_special_tokens=False),
            text_start=ids[TEXT_PROMPT_START],
            text_end=ids[TEXT_PROMPT_END],
            speech_start=ids[SPEECH_START],
            speech_end=ids[SPEECH_END],
            speech_offset=first,
            codebook_size=codebook_size,
            pad=pad,
        )

    def prompt(self, phone_ids: list[int], codes: list[int]) -> list[int]:
        """Ids up to and including ``<|SPEECH_GENERATION_START|>`` and the given codes."""
        return (
            self.user_prefix
            + [self.text_start]
            + phone_ids
            + [self.text_end]
            + self.assistant_prefix
            + [self.speech_start]
            + [self.speech_offset + c for c in codes]
        )

    def codes_from_ids(self, ids: list[int]) -> list[int]:
        """Speech codes among generated ids (anything else is skipped; stops at the end token)."""
        codes = []
        for tid in ids:
            if tid == self.speech_end:
                break
            code = tid - self.speech_offset
            if 0 <= code < self.codebook_size:
                codes.append(code)
        return codes
