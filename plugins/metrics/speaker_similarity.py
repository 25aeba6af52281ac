"""Speaker similarity: cosine between speaker embeddings of a generated clip and the target
speaker's reference clip (``EvalItem.speaker_prompt``).

Two numbers, named so they cannot be confused:

- ``cosine_raw``: the cosine of the two embeddings, in [-1, 1] (what most TTS papers call SIM);
- ``cosine_01`` (headline): the same cosine mapped linearly to [0, 1] as ``(1 + cosine) / 2``,
  the 0-1 scale used where similarity is combined with other rewards.

Backends: ``resemblyzer`` (default; GE2E encoder whose weights ship inside the wheel, works
offline) and ``ecapa`` (speechbrain ECAPA-TDNN; ``model`` is a hub id or a local folder holding
``hyperparams.yaml`` and the checkpoint; needs ``pip install speechbrain``). Embeddings of a
prompt shared by several items are computed once per batch.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from ttsadapt.components import Metric, MetricOutput, Params
from ttsadapt.errors import ItemError
from ttsadapt.markers import hookimpl
from ttsadapt.types import EvalItem, ItemScore

from ._common import cache_root, prepare_audio, score_each, torch_threads

SAMPLE_RATE = 16000
ECAPA_DEFAULT = "speechbrain/spkrec-ecapa-voxceleb"


@functools.lru_cache(maxsize=2)
def _resemblyzer_encoder(weights: str | None):
    import torch
    from resemblyzer import VoiceEncoder

    torch.set_num_threads(torch_threads())
    return VoiceEncoder("cpu", verbose=False, weights_fpath=weights)


@functools.lru_cache(maxsize=2)
def _ecapa_encoder(source: str):
    try:
        from speechbrain.inference.speaker import EncoderClassifier
    except ImportError:
        try:
            from speechbrain.pretrained import EncoderClassifier  # speechbrain < 1.0
        except ImportError as exc:
            raise ImportError(
                "speaker_similarity backend 'ecapa' needs speechbrain: pip install speechbrain "
                "(or use backend='resemblyzer', which works offline)"
            ) from exc
    local = Path(source).expanduser()
    if local.is_dir():
        savedir = local
    else:
        savedir = cache_root() / "speechbrain" / source.replace("/", "--")
    return EncoderClassifier.from_hparams(
        source=str(local if local.is_dir() else source),
        savedir=str(savedir),
        run_opts={"device": "cpu"},
    )


class SpeakerSimilarity(Metric):
    name = "speaker_similarity"
    version = "1"
    description = (
        "Cosine of speaker embeddings (generated clip vs the target speaker's reference clip): "
        "cosine_01 = (1 + cosine_raw) / 2. Backends resemblyzer (default, offline) or ECAPA."
    )
    outputs = (
        MetricOutput(
            "cosine_01", True, (0.0, 1.0), "", "(1 + cosine) / 2: the cosine mapped to 0..1"
        ),
        MetricOutput("cosine_raw", True, (-1.0, 1.0), "", "cosine of the two speaker embeddings"),
    )
    needs_speaker_prompt = True
    sample_rate = SAMPLE_RATE

    class Params(Params):
        backend: Literal["resemblyzer", "ecapa"] = "resemblyzer"
        # resemblyzer: path to other GE2E weights (.pt), None = the weights in the wheel;
        # ecapa: hub id or local folder, None = speechbrain/spkrec-ecapa-voxceleb.
        model: str | None = None

    def setup(self) -> None:
        if self.params.backend == "resemblyzer":
            self._encoder = _resemblyzer_encoder(self.params.model)
        else:
            os.environ.setdefault("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "0"))
            self._encoder = _ecapa_encoder(self.params.model or ECAPA_DEFAULT)

    def embed(self, audio: np.ndarray, sample_rate: int, what: str = "audio") -> np.ndarray:
        """Unit-length speaker embedding of one clip (validated and resampled to 16 kHz)."""
        if not hasattr(self, "_encoder"):
            self.setup()
        wav = prepare_audio(audio, sample_rate, SAMPLE_RATE, what=what)
        if self.params.backend == "resemblyzer":
            from resemblyzer import preprocess_wav

            speech = preprocess_wav(wav)  # volume normalisation + VAD silence trimming
            if speech.size < SAMPLE_RATE // 10:
                raise ItemError(f"no speech: the voice detector found no speech in {what}")
            emb = self._encoder.embed_utterance(speech)
        else:
            import torch

            with torch.no_grad():
                emb = self._encoder.encode_batch(torch.from_numpy(wav)[None]).reshape(-1).numpy()
        emb = np.asarray(emb, dtype=np.float64)
        norm = np.linalg.norm(emb)
        if not np.isfinite(norm) or norm == 0:
            raise ItemError(f"bad embedding: the {self.params.backend} embedding of {what} is zero")
        return emb / norm

    def score(self, items: Sequence[EvalItem]) -> list[ItemScore]:
        prompt_cache: dict[str, np.ndarray | ItemError] = {}

        def prompt_embedding(item: EvalItem) -> np.ndarray:
            if item.speaker_prompt is None:
                raise ItemError(
                    "missing speaker prompt: the item has no reference clip of the target speaker"
                )
            arr = np.ascontiguousarray(item.speaker_prompt)
            key = hashlib.sha256(arr.tobytes()).hexdigest() + str(item.speaker_prompt_sample_rate)
            if key not in prompt_cache:
                try:
                    prompt_cache[key] = self.embed(
                        arr, item.speaker_prompt_sample_rate, what="speaker prompt"
                    )
                except ItemError as exc:
                    prompt_cache[key] = exc
            result = prompt_cache[key]
            if isinstance(result, ItemError):
                raise result
            return result

        def one(item: EvalItem) -> dict[str, float]:
            ref = prompt_embedding(item)
            gen = self.embed(item.audio, item.sample_rate)
            cos = float(np.clip(np.dot(gen, ref), -1.0, 1.0))
            return {"cosine_01": (1.0 + cos) / 2.0, "cosine_raw": cos}

        return score_each(items, one)


@hookimpl
def ttsadapt_register_metrics():
    return [SpeakerSimilarity]
