"""NeuTTS: a Qwen2 causal LM that speaks NeuCodec tokens from espeak-ng phonemes.

The LM reads ``user: Convert the text to speech:<|TEXT_PROMPT_START|>{phones}<|TEXT_PROMPT_END|>
\\nassistant:<|SPEECH_GENERATION_START|>`` and writes ``<|speech_N|>`` codes (NeuCodec, 50 codes a
second, 24 kHz audio) up to ``<|SPEECH_GENERATION_END|>``. Training needs no codec: clips carry
their pre-encoded codes in the manifest's extra field ``codes`` (NeuTTS's own training data is text
+ codes). Labels cover the speech part only (from ``<|SPEECH_GENERATION_START|>`` on, as upstream)
and never the padding (upstream's example leaves pads in the loss; this does not).

``model`` is a hub id, a local folder with a Qwen2 checkpoint and its tokenizer, or ``"tiny"``: a
small Qwen2 with random weights and a character tokenizer, built offline from a config.

``codec``: ``"neucodec"`` (default, for real use; weights from the hub), ``"distill-neucodec"``,
``"none"`` (train on pre-encoded codes, no synthesis) or ``"mel_vq"``: an offline *stand-in* codec,
not NeuCodec — k-means over 80-bin log-mels at 16 kHz, 50 codes a second, decoded with Griffin-Lim
(see ``_melvq``). Its codebook is fitted deterministically on the training clips the first
time ``prepare`` sees audio without ``codes`` (or at load on ``codec_fit``: a manifest, folder or
audio file; or read from ``codec_repo``: a saved ``mel_vq_codebook.npz`` or a folder holding one)
and is saved with the adapter and the model. With it the tiny NeuTTS trains and speaks offline.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ttsadapt.components import Backbone, Params
from ttsadapt.errors import ConfigError, ItemError
from ttsadapt.markers import hookimpl
from ttsadapt.types import Clip, SynthesisRequest

from .._int8 import Int8Cache, require_cpu
from .._phonemes import phonemize
from ._tokenizer import PromptIds, build_tiny_tokenizer

if TYPE_CHECKING:  # torch is imported where it is used: plugin discovery stays light
    import torch

log = logging.getLogger(__name__)
IGNORE_INDEX = -100
_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")


class NeuTTSParams(Params):
    model: str = Field("neuphonic/neutts-air", description="hub id, local folder, or 'tiny'")
    codec: Literal["neucodec", "distill-neucodec", "mel_vq", "none"] = Field(
        "neucodec",
        description="codec for synthesis / encoding clips without `codes`; mel_vq is an "
        "offline stand-in (k-means log-mel + Griffin-Lim), not NeuCodec",
    )
    codec_repo: str | None = Field(
        None,
        description="hub id or folder of the codec weights (mel_vq: a mel_vq_codebook.npz "
        "or a folder holding one)",
    )
    codec_fit: str | None = Field(
        None,
        description="mel_vq: fit the codebook at load on this manifest (.jsonl: its train "
        "clips), folder of .wav/.flac files or audio file",
    )
    mel_vq_codes: int = Field(256, ge=2, le=8192, description="mel_vq codebook size")
    mel_vq_seed: int = Field(0, description="seed of the mel_vq k-means fit")
    codebook_size: int = Field(65536, ge=2, description="NeuCodec's 65,536 codes")
    max_seq_len: int = Field(2048, ge=16, description="longest training sequence (tokens)")
    # decoding settings (overridable per synthesize call)
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(50, ge=0)
    synthesis_batch_size: int = Field(
        16, ge=1, description="requests sampled together in one generate call"
    )
    min_new_tokens: int = Field(50, ge=0)
    max_length: int = Field(2048, ge=16, description="prompt + generated tokens")
    # the tiny offline model
    tiny_layers: int = Field(2, ge=1)
    tiny_hidden: int = Field(64, ge=8)
    tiny_heads: int = Field(4, ge=1)
    tiny_kv_heads: int = Field(2, ge=1)
    tiny_seed: int = Field(0, description="seed of the tiny model's random weights")


class NeuTTSSynthesis(BaseModel):
    """The decoding settings a suite's ``[synthesis]`` table (or a ``synthesize`` call) may set;
    unset ones fall back to the backbone's params."""

    model_config = ConfigDict(extra="forbid", strict=True)
    temperature: float | None = Field(None, gt=0, description="sampling temperature")
    top_k: int | None = Field(None, ge=0, description="top-k sampling (0: off)")
    min_new_tokens: int | None = Field(None, ge=0, description="speech tokens before end")
    max_length: int | None = Field(None, ge=16, description="prompt + generated tokens")
    batch_size: int | None = Field(None, ge=1, description="requests sampled together")
    int8: bool = Field(
        False, description="generate with a dynamically int8-quantised copy of the LM (CPU)"
    )


class NeuTTS(Backbone):
    name = "neutts"
    version = "1"
    description = (
        "NeuTTS (Qwen2 LM over NeuCodec tokens, espeak-ng phonemes); 'tiny' works offline."
    )
    sample_rate = 24000
    codes_per_second = 50
    scopes = ("lm", "all")  # NeuCodec decodes outside the LM: there is no decoder to adapt
    Params = NeuTTSParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.tokenizer = None
        self.ids: PromptIds | None = None
        self.device = "cpu"
        self._codec = None
        self.prepare_errors: list[tuple[str, str]] = []
        self._int8 = Int8Cache()

    # ------------------------------------------------------------------ loading

    def load(self, device: str = "cpu") -> None:
        p = self.params
        self.device = device
        if p.model == "tiny":
            self.tokenizer = build_tiny_tokenizer(p.codebook_size)
            self.module = self._tiny_model(len(self.tokenizer))
        else:
            self.tokenizer, self.module = self._pretrained(p.model)
        self.ids = PromptIds.from_tokenizer(self.tokenizer, p.codebook_size)
        vocab = self.module.get_input_embeddings().weight.shape[0]
        if vocab < len(self.tokenizer):
            raise ConfigError(
                f"NeuTTS model '{p.model}': the LM has {vocab} embeddings but the tokenizer has "
                f"{len(self.tokenizer)} tokens; the checkpoint and tokenizer do not belong together"
            )
        self.module.to(device)
        if p.codec == "mel_vq":
            self._setup_mel_vq()

    def _setup_mel_vq(self) -> None:
        """Check the codebook size; read a saved codebook or fit one on ``codec_fit``."""
        from ._melvq import CODEBOOK_FILE, MelVQCodec, audio_sources

        p = self.params
        if p.mel_vq_codes > p.codebook_size:
            raise ConfigError(
                f"neutts: mel_vq_codes ({p.mel_vq_codes}) exceeds the LM's codebook_size "
                f"({p.codebook_size}); each code needs a <|speech_N|> token"
            )
        self._codec = None
        saved = Path(p.model) / CODEBOOK_FILE if p.model != "tiny" else None
        if p.codec_repo:
            self._codec = MelVQCodec.load(Path(p.codec_repo))
        elif saved is not None and saved.is_file():
            self._codec = MelVQCodec.load(saved)
        elif p.codec_fit:
            files = audio_sources(p.codec_fit)
            audios = []
            for f in files:
                try:
                    audios.append(_load_16k(f)[0])
                except Exception as exc:  # noqa: BLE001 - one bad file must not stop the fit
                    log.warning("mel_vq: skipping %s for the codebook fit: %s", f, exc)
            self._codec = MelVQCodec.fit(
                audios, p.mel_vq_codes, p.mel_vq_seed, source=str(p.codec_fit)
            )
        if self._codec is not None and self._codec.n_codes > p.codebook_size:
            raise ConfigError(
                f"neutts: the mel_vq codebook has {self._codec.n_codes} codes but the LM has "
                f"only {p.codebook_size} speech tokens"
            )

    def _fit_mel_vq(self, clips: Sequence[Clip]) -> dict[str, np.ndarray]:
        """Fit the mel_vq codebook on ``clips`` without codes; returns their loaded audio."""
        from ._melvq import MelVQCodec

        audio: dict[str, np.ndarray] = {}
        for clip in clips:
            if clip.extra.get("codes") is None:
                try:
                    audio[clip.id] = _load_16k(clip.audio)[0]
                except Exception as exc:  # noqa: BLE001 - becomes the clip's error row below
                    log.warning("mel_vq: clip %s is left out of the codebook fit: %s", clip.id, exc)
        if audio:
            p = self.params
            self._codec = MelVQCodec.fit(
                audio.values(), p.mel_vq_codes, p.mel_vq_seed, source=f"{len(audio)} clips"
            )
            log.info(
                "neutts: fitted the mel_vq stand-in codec (%d codes) on %d clips",
                self._codec.n_codes,
                len(audio),
            )
        return audio

    def _tiny_model(self, vocab_size: int) -> torch.nn.Module:
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM

        p = self.params
        if p.tiny_hidden % p.tiny_heads or p.tiny_heads % p.tiny_kv_heads:
            raise ConfigError(
                f"neutts tiny: tiny_hidden ({p.tiny_hidden}) must divide by tiny_heads "
                f"({p.tiny_heads}) and tiny_heads by tiny_kv_heads ({p.tiny_kv_heads})"
            )
        config = Qwen2Config(
            vocab_size=vocab_size,
            hidden_size=p.tiny_hidden,
            intermediate_size=p.tiny_hidden * 3,
            num_hidden_layers=p.tiny_layers,
            num_attention_heads=p.tiny_heads,
            num_key_value_heads=p.tiny_kv_heads,
            max_position_embeddings=max(p.max_seq_len, p.max_length),
            tie_word_embeddings=True,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.pad_token_id,
        )
        fork = torch.random.fork_rng()
        with fork:
            torch.manual_seed(p.tiny_seed)
            model = Qwen2ForCausalLM(config)
        return model

    def _pretrained(self, source: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = Path(source)
        if folder.exists() and not (folder / "config.json").is_file():
            raise ConfigError(
                f"NeuTTS model folder {folder} has no config.json; expected a transformers "
                "checkpoint (config.json, model weights, tokenizer files)"
            )
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        except OSError as exc:
            raise ConfigError(
                f"cannot load NeuTTS model '{source}': {exc}. Give a local folder, or a hub id "
                "with network access (HF_HUB_OFFLINE=1 forbids downloads)"
            ) from exc
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"NeuTTS model '{source}': the weights do not match its config.json ({exc})"
            ) from exc
        return tokenizer, model

    def save_model(self, folder: Path) -> Path:
        """Write the LM and tokenizer as a transformers checkpoint folder (loadable as ``model``)."""
        folder = Path(folder)
        self.module.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        self._save_codebook(folder)
        return folder

    def _save_codebook(self, folder: Path) -> None:
        if self.params.codec == "mel_vq" and self._codec is not None:
            self._codec.save(folder)

    # ------------------------------------------------------------------ adapter targets

    def target_modules(self, scope: str) -> list[str]:
        import torch

        if scope == "decoder":
            raise ConfigError(
                "neutts has no trainable decoder: NeuCodec decodes outside the LM and stays "
                "frozen. Use scope 'lm' (or 'all', the same layers)"
            )
        if scope not in self.scopes:
            raise ConfigError(f"unknown scope '{scope}' for neutts; expected one of {self.scopes}")
        return [
            name
            for name, mod in self.module.named_modules()
            if isinstance(mod, torch.nn.Linear) and name.rsplit(".", 1)[-1] in _ATTENTION
        ]

    def frozen_modules(self) -> list[str]:
        return []  # the codec is not part of `module`

    # ------------------------------------------------------------------ training data

    def phonemes(self, text: str, language: str = "en") -> str:
        return phonemize(text, language)

    def token_count(self, text: str, language: str = "en") -> int:
        return len(self.tokenizer.encode(self.phonemes(text, language), add_special_tokens=False))

    def _clip_codes(self, clip: Clip, audio: np.ndarray | None = None) -> list[int]:
        codes = clip.extra.get("codes")
        if codes is None:
            if self.params.codec == "none":
                raise ItemError(
                    f"clip {clip.id} has no pre-encoded `codes` and codec = 'none'; add codes to "
                    "the manifest or set codec = 'neucodec' (or 'mel_vq' offline)"
                )
            if audio is None:
                try:
                    audio, _ = _load_16k(clip.audio)
                except ConfigError:
                    raise
                except Exception as exc:  # the clip becomes an error row
                    raise ItemError(
                        f"clip {clip.id}: cannot read audio {clip.audio}: {exc}"
                    ) from exc
            codes = self.encode_codes(audio)
            if not codes:
                raise ItemError(f"clip {clip.id}: the audio is too short to encode")
            return codes
        try:
            codes = [int(c) for c in codes]
        except (TypeError, ValueError) as exc:
            raise ItemError(f"clip {clip.id}: `codes` must be a list of integers") from exc
        bad = [c for c in codes if not 0 <= c < self.params.codebook_size]
        if bad:
            raise ItemError(
                f"clip {clip.id}: codes {bad[:3]} are outside 0..{self.params.codebook_size - 1}"
            )
        if not codes:
            raise ItemError(f"clip {clip.id}: `codes` is empty")
        return codes

    def prepare(self, clips: Sequence[Clip]) -> list[dict[str, Any]]:
        """Token ids and the label start of each clip; a clip that cannot be used is left out and
        listed in ``prepare_errors`` as ``(clip id, reason)`` (the runner counts these in the run
        summary and names them in ``dropped_clips.jsonl``).

        With ``codec = "mel_vq"`` and no codebook yet, the codebook is fitted here on the clips'
        audio first (the first ``prepare`` is the training split's)."""
        examples = []
        audio: dict[str, np.ndarray] = {}
        if self.params.codec == "mel_vq" and self._codec is None:
            audio = self._fit_mel_vq(clips)
        for clip in clips:
            try:
                codes = self._clip_codes(clip, audio.get(clip.id))
                phones = self.tokenizer.encode(
                    self.phonemes(clip.text, clip.language), add_special_tokens=False
                )
                ids = [*self.ids.prompt(phones, codes), self.ids.speech_end]
                if len(ids) > self.params.max_seq_len:
                    raise ItemError(
                        f"clip {clip.id}: {len(ids)} tokens exceed max_seq_len "
                        f"{self.params.max_seq_len}"
                    )
            except ItemError as exc:
                self.prepare_errors.append((clip.id, str(exc)))
                log.warning("neutts: skipping clip %s: %s", clip.id, exc)
                continue
            start = len(ids) - len(codes) - 2  # index of <|SPEECH_GENERATION_START|>
            examples.append({"id": clip.id, "input_ids": ids, "label_start": start})
        return examples

    def collate(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        longest = max(len(e["input_ids"]) for e in examples)
        input_ids = torch.full((len(examples), longest), self.ids.pad, dtype=torch.long)
        labels = torch.full((len(examples), longest), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(examples), longest), dtype=torch.long)
        for row, ex in enumerate(examples):
            ids = torch.tensor(ex["input_ids"], dtype=torch.long)
            n = len(ids)
            input_ids[row, :n] = ids
            mask[row, :n] = 1
            labels[row, ex["label_start"] : n] = ids[ex["label_start"] :]
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        device = self.module.get_input_embeddings().weight.device
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        out = self.module(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            labels=batch["labels"],
            use_cache=False,
        )
        return {"loss": out.loss}

    # ------------------------------------------------------------------ synthesis

    @classmethod
    def resolve_synthesis(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """The given decoding settings, validated (``pydantic.ValidationError`` on an unknown key
        or a bad value); only the keys given are returned."""
        return NeuTTSSynthesis.model_validate(settings).model_dump(exclude_unset=True)

    def decoding_settings(self, settings: dict[str, Any] | None = None) -> dict[str, Any]:
        p = self.params
        merged = {
            "temperature": p.temperature,
            "top_k": p.top_k,
            "min_new_tokens": p.min_new_tokens,
            "max_length": p.max_length,
            "batch_size": p.synthesis_batch_size,
            "int8": False,
        }
        try:
            given = self.resolve_synthesis(dict(settings or {}))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            if err["type"] == "extra_forbidden":
                raise ConfigError(
                    f"unknown neutts decoding settings [{where!r}]; known: {sorted(merged)}"
                ) from None
            raise ConfigError(
                f"neutts decoding setting {where!r}: {err['msg']} (got {err.get('input')!r})"
            ) from None
        merged.update({k: v for k, v in given.items() if v is not None})
        return merged

    def _lm(self, s: dict[str, Any]):
        """The LM that generates: the live one, or its int8 copy (``int8`` setting)."""
        if not s["int8"]:
            return self.module
        require_cpu(self.name, self.device)
        return self._int8.get(self.module, [""])

    def _prompt_for(self, request: SynthesisRequest) -> list[int]:
        text = self.phonemes(request.text, request.language)
        ref_codes: list[int] = []
        if request.prompt_audio is not None:
            if not request.prompt_text:
                raise ItemError(
                    f"request {request.id}: NeuTTS clones from a reference only with its "
                    "transcript (prompt_text)"
                )
            audio = np.asarray(request.prompt_audio, dtype=np.float32)
            if request.prompt_sample_rate and request.prompt_sample_rate != 16000:
                from ttsadapt.audio import resample

                audio = resample(audio, request.prompt_sample_rate, 16000)
            ref_codes = self.encode_codes(audio)
            text = self.phonemes(request.prompt_text, request.language) + " " + text
        phones = self.tokenizer.encode(text, add_special_tokens=False)
        return self.ids.prompt(phones, ref_codes)

    def generate_codes(
        self, requests: Sequence[SynthesisRequest], settings: dict[str, Any] | None = None
    ) -> list[list[int]]:
        """Sample speech codes for each request (no codec needed except for reference audio).

        Requests are generated together, ``batch_size`` (a decoding setting) at a time: prompts are
        left-padded with an attention mask, so one ``generate`` call samples them all; each row
        stops at its own end token."""
        import torch

        s = self.decoding_settings(settings)
        self.module.eval()
        lm = self._lm(s)
        device = "cpu" if s["int8"] else self.module.get_input_embeddings().weight.device
        prompts = []
        for request in requests:
            prompt = self._prompt_for(request)
            if len(prompt) >= s["max_length"]:
                raise ItemError(
                    f"request {request.id}: the prompt has {len(prompt)} tokens, not below "
                    f"max_length {s['max_length']}"
                )
            prompts.append(prompt)
        results: list[list[int]] = []
        step = max(1, int(s["batch_size"]))
        for start in range(0, len(prompts), step):
            chunk = prompts[start : start + step]
            width = max(len(p) for p in chunk)
            ids = torch.full((len(chunk), width), self.ids.pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, prompt in enumerate(chunk):
                ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
                mask[row, width - len(prompt) :] = 1
            out = lm.generate(
                ids.to(device),
                attention_mask=mask.to(device),
                max_length=s["max_length"],
                eos_token_id=self.ids.speech_end,
                pad_token_id=self.ids.pad,
                do_sample=True,
                temperature=s["temperature"],
                top_k=s["top_k"] or None,
                min_new_tokens=min(s["min_new_tokens"], s["max_length"] - width),
                use_cache=True,
            )
            for row in range(len(chunk)):
                results.append(self.ids.codes_from_ids(out[row, width:].tolist()))
        return results

    def synthesize(
        self, requests: Sequence[SynthesisRequest], settings: dict[str, Any] | None = None
    ) -> list[np.ndarray]:
        self._require_codec("synthesize")
        audio = []
        for request, codes in zip(requests, self.generate_codes(requests, settings)):
            if not codes:
                raise ItemError(f"request {request.id}: the LM produced no speech tokens")
            audio.append(self.decode_codes(codes))
        return audio

    # ------------------------------------------------------------------ preference training

    dpo_beta_scale = 1.0  # DPO on summed token log-probs (see ttsadapt.preference)

    def sample_groups(
        self,
        requests: Sequence[SynthesisRequest],
        k: int,
        settings: dict[str, Any] | None,
        seed: int,
    ) -> list:
        """``k`` sampled rollouts per request in one batched pass (see ``_preference``)."""
        from . import _preference

        return _preference.sample_groups(self, requests, k, settings, seed)

    def rollout_logprobs(self, rollouts: Sequence[Any]) -> torch.Tensor:
        from . import _preference

        return _preference.rollout_logprobs(self, rollouts)

    def rollout_stats(self, rollouts: Sequence[Any], with_kl: bool) -> dict[str, torch.Tensor]:
        from . import _preference

        return _preference.rollout_stats(self, rollouts, with_kl)

    def preference_scores(self, rollouts: Sequence[Any], seed: int) -> torch.Tensor:
        from . import _preference

        return _preference.preference_scores(self, rollouts, seed)

    # ------------------------------------------------------------------ codec

    def _require_codec(self, what: str):
        if self._codec is not None:
            return self._codec
        p = self.params
        if p.codec == "none":
            raise ConfigError(
                f"neutts cannot {what} without a codec (codec = 'none'): install `neucodec` and "
                "set codec = 'neucodec' (its weights come from the hub: neuphonic/neucodec), or "
                "use the offline stand-in codec = 'mel_vq'"
            )
        if p.codec == "mel_vq":
            raise ConfigError(
                f"neutts cannot {what}: the mel_vq codebook is not fitted yet. Train first (the "
                "codebook is fitted on the training clips), or set codec_fit = a manifest / "
                "folder of recordings, or codec_repo = a saved mel_vq_codebook.npz"
            )
        try:
            import neucodec
        except ImportError as exc:
            raise ConfigError(
                f"neutts needs the `neucodec` package to {what}: pip install neucodec "
                "(or train on pre-encoded `codes` and skip synthesis)"
            ) from exc
        cls = neucodec.NeuCodec if p.codec == "neucodec" else neucodec.DistillNeuCodec
        repo = p.codec_repo or f"neuphonic/{p.codec}"
        try:
            codec = cls.from_pretrained(repo)
        except Exception as exc:  # hub/IO errors of many kinds
            raise ConfigError(f"cannot load the NeuCodec codec from '{repo}': {exc}") from exc
        self._codec = codec.eval().to(self.device)
        return self._codec

    def encode_codes(self, audio_16k: np.ndarray) -> list[int]:
        """Codec codes (NeuCodec, or the mel_vq stand-in) of mono 16 kHz audio."""
        import torch

        codec = self._require_codec("encode audio")
        if self.params.codec == "mel_vq":
            return codec.encode(audio_16k)
        wav = torch.from_numpy(np.asarray(audio_16k, dtype=np.float32))[None, None, :]
        with torch.no_grad():
            codes = codec.encode_code(audio_or_path=wav.to(self.device))
        return [int(c) for c in codes.reshape(-1).tolist()]

    def decode_codes(self, codes: list[int]) -> np.ndarray:
        """24 kHz audio of codec codes (mel_vq: decoded at 16 kHz, resampled; codes outside its
        codebook, which an LM with more speech tokens can sample, are skipped)."""
        import torch

        codec = self._require_codec("decode speech tokens")
        if self.params.codec == "mel_vq":
            from ttsadapt.audio import resample

            kept = [c for c in codes if 0 <= c < codec.n_codes]
            if not kept:
                raise ItemError("none of the generated speech tokens is in the mel_vq codebook")
            audio = resample(codec.decode(kept), codec.sample_rate, self.sample_rate)
            return np.asarray(audio, dtype=np.float32)
        tensor = torch.tensor(codes, dtype=torch.long, device=self.device)[None, None, :]
        with torch.no_grad():
            audio = codec.decode_code(tensor)
        return np.asarray(audio.detach().cpu().numpy()).reshape(-1).astype(np.float32)

    # ------------------------------------------------------------------ adapters

    def save_adapter(self, path: Path) -> None:
        from ttsadapt.training.adapters import save_adapter

        save_adapter(self.module, Path(path))
        self._save_codebook(Path(path))

    def load_adapter(self, path: Path) -> None:
        from ttsadapt.training.adapters import load_adapter

        load_adapter(self.module, Path(path))
        if self.params.codec == "mel_vq":
            from ._melvq import CODEBOOK_FILE, MelVQCodec

            if (Path(path) / CODEBOOK_FILE).is_file():
                self._codec = MelVQCodec.load(Path(path))

    def export_adapter(self, path: Path) -> None:
        """PEFT's own format (``adapter_model.safetensors`` + ``adapter_config.json``) for LoRA,
        or a full transformers checkpoint folder when the LM was fully fine-tuned."""
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        from ttsadapt.training.adapters import lora_config_of

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = lora_config_of(self.module)
        if config is None:
            self.save_model(path)
            return
        self._save_codebook(path)
        state = {
            "base_model.model." + k: v.detach().contiguous().cpu()
            for k, v in get_peft_model_state_dict(self.module).items()
        }
        save_file(state, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
        data = config.to_dict()
        data.update(
            base_model_name_or_path=self.params.model,
            task_type="CAUSAL_LM",
            peft_type="LORA",
        )
        data = {k: (sorted(v) if isinstance(v, set) else v) for k, v in data.items()}
        (path / "adapter_config.json").write_text(json.dumps(data, indent=2, default=str) + "\n")


def _load_16k(path: Path) -> tuple[np.ndarray, int]:
    from ttsadapt.audio import load_audio

    return load_audio(path, target_sr=16000)


@hookimpl
def ttsadapt_register_backbones():
    return [NeuTTS]
