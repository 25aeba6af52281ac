"""Speaker similarity: cosine between speaker embeddings of a generated clip and the target
speaker's reference clip (``EvalItem.speaker_prompt``).

Speed: every distinct clip of a batch (generated or prompt, by content hash) is embedded once,
and with resemblyzer the 1.6 s partials of all clips share LSTM calls.

Two numbers, named so they cannot be confused:

- ``cosine_raw``: the cosine of the two embeddings, in [-1, 1] (what most TTS papers call SIM);
- ``cosine_01`` (headline): the same cosine mapped linearly to [0, 1] as ``(1 + cosine) / 2``,
  the 0-1 scale used where similarity is combined with other rewards.

Backends: ``resemblyzer`` (default; GE2E encoder whose weights ship inside the wheel, works
offline) and ``ecapa`` (speechbrain ECAPA-TDNN; ``model`` is a hub id or a local folder holding
``hyperparams.yaml`` and the checkpoint; needs ``pip install speechbrain``).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ttsadapt.components import Metric, MetricOutput, Params
from ttsadapt.errors import ConfigError, ItemError
from ttsadapt.markers import hookimpl
from ttsadapt.metric_helpers import prepare_audio, score_each
from ttsadapt.types import EvalItem, ItemScore

from . import _provenance
from ._common import cache_root, torch_thread_limit

SAMPLE_RATE = 16000
ECAPA_DEFAULT = "speechbrain/spkrec-ecapa-voxceleb"


@functools.lru_cache(maxsize=2)
def _resemblyzer_encoder(weights: str | None):
    try:
        from resemblyzer import VoiceEncoder
    except ImportError as exc:
        raise ConfigError(
            "speaker_similarity's default backend needs resemblyzer (the `speaker` extra): "
            f"pip install 'ttsadapt[speaker]' ({exc})"
        ) from exc

    return VoiceEncoder("cpu", verbose=False, weights_fpath=weights)


def _ecapa_savedir(source: str) -> Path:
    return cache_root() / "speechbrain" / source.replace("/", "--")


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
    savedir = local if local.is_dir() else _ecapa_savedir(source)
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

    # Execution detail, not a parameter (no effect on the numbers beyond float rounding, so it
    # stays out of the cache key): resemblyzer partials per LSTM call, across clips.
    partials_batch: int = 64

    def model_provenance(self) -> dict[str, Any]:
        def compute() -> dict[str, Any]:
            if self.params.backend == "resemblyzer":
                packages = _provenance.package_versions("resemblyzer", "webrtcvad", "torch")
                if self.params.model:
                    weights = Path(self.params.model).expanduser()
                    source = str(weights.resolve())
                else:
                    weights = _provenance.package_file("resemblyzer", "pretrained.pt")
                    source = "resemblyzer/pretrained.pt"
                files = (
                    {weights.name: _provenance.file_sha256(weights)} if weights.is_file() else {}
                )
                return _provenance.provenance(packages, files, source=source)
            packages = _provenance.package_versions("speechbrain", "torch", "torchaudio")
            source = self.params.model or ECAPA_DEFAULT
            local = Path(source).expanduser()
            # a hub model's files land in our savedir once fetched (see _ecapa_encoder)
            folder = local if local.is_dir() else _ecapa_savedir(source)
            files = _provenance.folder_sha256(folder) if folder.is_dir() else {}
            return _provenance.provenance(packages, files, source=source)

        return _provenance.cached(self, compute)

    def setup(self) -> None:
        if self.params.backend == "resemblyzer":
            self._encoder = _resemblyzer_encoder(self.params.model)
        else:
            os.environ.setdefault("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "0"))
            self._encoder = _ecapa_encoder(self.params.model or ECAPA_DEFAULT)
            _provenance.forget(self)  # the hub model may have just been downloaded

    def embed(self, audio: np.ndarray, sample_rate: int, what: str = "audio") -> np.ndarray:
        """Unit-length speaker embedding of one clip (validated and resampled to 16 kHz)."""
        result = self.embed_many([(audio, sample_rate, what)])[0]
        if isinstance(result, ItemError):
            raise result
        return result

    def embed_many(
        self, clips: Sequence[tuple[np.ndarray | None, int | None, str]]
    ) -> list[np.ndarray | ItemError]:
        """Unit-length embeddings of several (audio, sample rate, what) clips; a clip that cannot
        be embedded gives its :class:`ItemError` in its place.

        resemblyzer: each clip is volume-normalised and VAD-trimmed (``preprocess_wav``) and cut
        into resemblyzer's own 1.6 s partials (``compute_partial_slices``, rate 1.3/s, coverage
        0.75); the partials of all clips go through the LSTM together in batches of
        ``partials_batch``, and each clip's embedding is the normalised mean of its partials, as
        in ``VoiceEncoder.embed_utterance`` (equal to it within float rounding, tested).
        """
        if not hasattr(self, "_encoder"):
            self.setup()
        out: list[np.ndarray | ItemError | None] = [None] * len(clips)
        wavs: list[tuple[int, np.ndarray]] = []
        for i, (audio, sample_rate, what) in enumerate(clips):
            try:
                wav = prepare_audio(audio, sample_rate, SAMPLE_RATE, what=what)
                if self.params.backend == "resemblyzer":
                    from resemblyzer import preprocess_wav

                    wav = preprocess_wav(wav)  # volume normalisation + VAD silence trimming
                    if wav.size < SAMPLE_RATE // 10:
                        raise ItemError(f"no speech: the voice detector found no speech in {what}")
                    wavs.append((i, wav))
                else:
                    out[i] = self._unit(self._ecapa_embedding(wav), what)
            except ItemError as exc:
                out[i] = exc
        if wavs:
            embeddings = self._resemblyzer_embeddings([w for _, w in wavs])
            for (i, _), emb in zip(wavs, embeddings):
                try:
                    out[i] = self._unit(emb, clips[i][2])
                except ItemError as exc:
                    out[i] = exc
        return out  # type: ignore[return-value]

    def _unit(self, emb: np.ndarray, what: str) -> np.ndarray:
        emb = np.asarray(emb, dtype=np.float64).reshape(-1)
        norm = np.linalg.norm(emb)
        if not np.isfinite(norm) or norm == 0:
            raise ItemError(f"bad embedding: the {self.params.backend} embedding of {what} is zero")
        return emb / norm

    def _ecapa_embedding(self, wav: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self._encoder.encode_batch(torch.from_numpy(wav)[None]).reshape(-1).numpy()

    def _resemblyzer_embeddings(self, wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``embed_utterance`` of each preprocessed wav, with the partials of all of them run
        through the LSTM in shared batches."""
        import torch
        from resemblyzer.audio import wav_to_mel_spectrogram

        encoder = self._encoder
        partials: list[np.ndarray] = []
        counts: list[int] = []
        for wav in wavs:
            wav_slices, mel_slices = encoder.compute_partial_slices(len(wav), 1.3, 0.75)
            if wav_slices[-1].stop >= len(wav):
                wav = np.pad(wav, (0, wav_slices[-1].stop - len(wav)))
            mel = wav_to_mel_spectrogram(wav)
            partials.extend(mel[s] for s in mel_slices)
            counts.append(len(mel_slices))
        step = max(1, self.partials_batch)
        with torch.no_grad(), torch_thread_limit(1):
            partial_embeds = np.concatenate(
                [
                    encoder(torch.from_numpy(np.stack(partials[s : s + step]))).numpy()
                    for s in range(0, len(partials), step)
                ]
            )
        out, start = [], 0
        for n in counts:
            mean = partial_embeds[start : start + n].mean(axis=0)
            out.append(mean / np.linalg.norm(mean))
            start += n
        return out

    def score(self, items: Sequence[EvalItem]) -> list[ItemScore]:
        """Every distinct clip (generated or prompt, by content) is embedded once per call."""
        keys: dict[str, int] = {}
        clips: list[tuple[np.ndarray | None, int | None, str]] = []

        def index(audio, sample_rate, what: str) -> int:
            arr = np.ascontiguousarray(audio) if audio is not None else np.zeros(0, np.float32)
            h = hashlib.sha256(f"{arr.dtype.str}|{arr.shape}|{sample_rate}|".encode())
            h.update(arr.tobytes())
            key = h.hexdigest()
            if key not in keys:
                keys[key] = len(clips)
                clips.append((audio, sample_rate, what))
            return keys[key]

        pairs: list[tuple[int, int] | None] = []
        for item in items:
            if item.speaker_prompt is None:
                pairs.append(None)
                continue
            pairs.append(
                (
                    index(item.audio, item.sample_rate, "audio"),
                    index(item.speaker_prompt, item.speaker_prompt_sample_rate, "speaker prompt"),
                )
            )
        embeddings = self.embed_many(clips) if clips else []

        def one(item: EvalItem, pair: tuple[int, int] | None) -> dict[str, float]:
            if pair is None:
                raise ItemError(
                    "missing speaker prompt: the item has no reference clip of the target speaker"
                )
            gen, ref = embeddings[pair[0]], embeddings[pair[1]]
            # The prompt's problem first, as the reason to report; a clip shared by content with
            # a field of another name is re-checked so the reason names this item's field.
            for emb, j, what in ((ref, pair[1], "speaker prompt"), (gen, pair[0], "audio")):
                if isinstance(emb, ItemError):
                    if clips[j][2] != what:
                        emb = self.embed_many([(clips[j][0], clips[j][1], what)])[0]
                    if isinstance(emb, ItemError):
                        raise emb
            cos = float(np.clip(np.dot(gen, ref), -1.0, 1.0))
            return {"cosine_01": (1.0 + cos) / 2.0, "cosine_raw": cos}

        pair_of = {id(item): pair for item, pair in zip(items, pairs)}
        return score_each(items, lambda item: one(item, pair_of[id(item)]))


@hookimpl
def ttsadapt_register_metrics():
    return [SpeakerSimilarity]
