"""VoxCPM2 backbone (``voxcpm`` package, Apache-2.0): tiny offline model or the real one.

``model`` is ``"tiny"`` (a small VoxCPM2 with random weights, a character tokenizer made on the
spot and a fixed 80-bin log-mel front end + Griffin-Lim as its codec — it trains and speaks on
a CPU, offline), a hub id (``openbmb/VoxCPM2``) or a local folder in the upstream layout (config,
tokenizer, ``model.safetensors``, ``audiovae.safetensors``).

The training loss is voxcpm's own ``VoxCPM2Model.forward``: the flow-matching loss ``loss_diff``
of the LocDiT and the stop loss ``loss_stop``, both masked to the target audio patches, summed
with weights ``lambda_diff``/``lambda_stop`` (upstream's defaults: 1, 1). Synthesis calls voxcpm's
own ``generate`` in the upstream modes: ``plain``, ``clone`` (reference audio, isolated by the
ref-audio markers), ``continuation`` (prompt audio + its transcript) and ``clone+continuation``.

Importing ``voxcpm`` without torchaudio: see ``_import`` (a stand-in torchaudio exists in
``sys.modules`` only while ``import voxcpm`` runs, after all third-party dependencies are imported;
nothing installed is edited).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ttsadapt.components import Backbone, Params
from ttsadapt.errors import ConfigError, DataError, ItemError
from ttsadapt.markers import hookimpl
from ttsadapt.types import Clip, SynthesisRequest

from .._int8 import Int8Cache, require_cpu

log = logging.getLogger(__name__)

Mode = Literal["plain", "clone", "continuation", "clone+continuation"]
_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")


class VoxCPM2Params(Params):
    model: str = "tiny"
    revision: str | None = None
    codec: Literal["auto", "mel", "audiovae"] = "auto"
    dtype: Literal["float32", "bfloat16"] = "float32"
    # tiny model sizes (ignored for hub/local models)
    lm_hidden: int = 192
    lm_layers: int = 3
    lm_kv_heads: int = 2
    residual_layers: int = 1
    local_hidden: int = 128
    local_layers: int = 1
    head_dim: int = 32
    patch_size: int = 4
    fsq_dim: int = 64
    n_mels: int = 80
    context_length: int = 2048
    init_seed: int = 0
    # what the tokenizer reads: "auto" = what the model folder says (a tiny model: characters);
    # "phonemes" = espeak-ng IPA (nearly one symbol per sound; the language tag stays as text)
    text_input: Literal["auto", "characters", "phonemes"] = "auto"
    # loss
    # auxiliary alignment loss (pre-training lever, 0 = off): CTC over one LM layer's attention
    # from each audio position to the text tokens, which must be walked through in order
    align_weight: float = Field(0.0, ge=0.0)
    align_layer: int = Field(1, ge=0, description="base-LM layer whose attention is aligned")
    # pre-training lever (0 = off): drop whole audio patches from the LMs' input while training
    # (Tacotron's pre-net dropout), so the next patch cannot be predicted from the audio history
    # alone and the text has to carry it; the flow decoder still sees the previous patch
    history_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lambda_diff: float = 1.0
    lambda_stop: float = 1.0
    use_reference_audio: bool = True
    # decoding
    mode: Mode = "plain"
    cfg_value: float = 2.0
    inference_timesteps: int = 10
    min_len: int = 2
    max_len: int = 600
    max_len_ratio: float = 6.0
    language_tags: bool = True


class VoxCPM2Synthesis(BaseModel):
    """The decoding settings a suite's ``[synthesis]`` table (or a ``synthesize`` call) may set;
    unset ones fall back to the backbone's params."""

    model_config = ConfigDict(extra="forbid", strict=True)
    mode: Mode | None = Field(None, description="prompting mode")
    cfg_value: float | None = Field(None, ge=0, description="classifier-free guidance scale")
    inference_timesteps: int | None = Field(None, ge=1, description="flow-matching ODE steps")
    min_len: int | None = Field(None, ge=0)
    max_len: int | None = Field(None, ge=1)
    max_len_ratio: float | None = Field(None, gt=0)
    int8: bool = Field(
        False, description="base_lm and residual_lm dynamically int8-quantised, on a copy (CPU)"
    )


INT8_SUBMODULES = ("base_lm", "residual_lm")


class VoxCPM2Backbone(Backbone):
    """VoxCPM2: MiniCPM-4 LM + residual LM + LocEnc/LocDiT flow-matching decoder + codec."""

    name: ClassVar[str] = "voxcpm2"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "VoxCPM2 via the voxcpm package: tiny offline model (mel codec + Griffin-Lim) or hub/local"
    )
    Params: ClassVar[type[Params]] = VoxCPM2Params
    # preference protocol: Diffusion-DPO's -β/2 on flow-matching losses (see _flow_preference)
    dpo_beta_scale: ClassVar[float] = 0.5

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.module = None
        self.tokenizer = None
        self.config: dict[str, Any] = {}
        self.device = "cpu"
        self.sample_rate = 16000
        self.last_prepare_errors: list[tuple[str, str]] = []  # of the latest prepare call
        # every clip any prepare call set aside, as (clip id, reason): the runner counts these
        self.prepare_errors: list[tuple[str, str]] = []
        self.last_synthesis_notes: list[tuple[str, str]] = []
        self._int8 = Int8Cache()

    # ------------------------------------------------------------------ loading
    def _codec_kind(self) -> str:
        return "mel" if self.params.codec in ("auto", "mel") else "audiovae"

    def _tiny_config(self) -> dict[str, Any]:
        from ._config import tiny_config

        p = self.params
        try:
            return tiny_config(
                vocab_size=len(self.tokenizer.vocab) if self.tokenizer is not None else 452,
                feat_dim=p.n_mels if self._codec_kind() == "mel" else 64,
                lm_hidden=p.lm_hidden,
                lm_layers=p.lm_layers,
                lm_kv_heads=p.lm_kv_heads,
                residual_layers=p.residual_layers,
                local_hidden=p.local_hidden,
                local_layers=p.local_layers,
                head_dim=p.head_dim,
                patch_size=p.patch_size,
                fsq_dim=p.fsq_dim,
                max_length=p.context_length,
            )
        except ValueError as exc:
            raise ConfigError(f"backbone voxcpm2: {exc}") from exc

    def load(self, device: str = "cpu") -> None:
        """Build the tiny model, or load a hub id / local folder. ``device='meta'`` builds the
        architecture without weights (parameter counting)."""
        from ._config import TEXT_KEY, build_char_tokenizer, phoneme_charset
        from ._io import build_model, load_folder, make_codec, resolve_model_path

        p = self.params
        self.device = device
        if p.model in ("tiny", "full-size"):
            if p.model == "tiny":
                phonemes = p.text_input == "phonemes"
                self.tokenizer = build_char_tokenizer(phoneme_charset() if phonemes else None)
                self.config = self._tiny_config()
                self.config[TEXT_KEY] = {"input": "phonemes" if phonemes else "characters"}
            else:
                from ._config import full_config

                self.tokenizer = None if device == "meta" else build_char_tokenizer()
                self.config = full_config(
                    feat_dim=p.n_mels if self._codec_kind() == "mel" else 64,
                    max_length=16 if device == "meta" else p.context_length,
                )
            kind = self._codec_kind()
            codec_cfg = {"n_mels": p.n_mels} if kind == "mel" else None
            if device == "meta":
                import torch

                with torch.device("meta"):
                    codec = make_codec(kind, codec_cfg)
            else:
                codec = make_codec(kind, codec_cfg)
            self.module = build_model(
                self.config, self.tokenizer, codec, device, dtype=p.dtype, init_seed=p.init_seed
            )
            if kind == "mel":
                self.config["ttsadapt_codec"] = {"kind": "mel", "config": codec.config.to_dict()}
        else:
            folder = resolve_model_path(p.model, p.revision)
            self.module, self.tokenizer, self.config = load_folder(folder, device, p.dtype, p.codec)
        for name, param in self.module.named_parameters():
            if name.startswith("audio_vae."):
                param.requires_grad_(False)
        self.sample_rate = int(self.module.sample_rate)
        saved = self.config.get(TEXT_KEY, {}).get("input", "characters")
        if p.text_input != "auto" and p.text_input != saved and p.model != "tiny":
            raise ConfigError(
                f"backbone voxcpm2: text_input='{p.text_input}' but model '{p.model}' reads "
                f"{saved}; use text_input='auto'"
            )
        self.phoneme_input = saved == "phonemes"
        if p.align_weight > 0 and device != "meta":
            self._attach_align_hook()
        if p.history_dropout > 0 and device != "meta":
            self._attach_history_dropout()

    def _attach_history_dropout(self) -> None:
        import torch

        module, rate = self.module, self.params.history_dropout

        def drop(_mod: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            if not module.training:
                return None
            feats = args[0]
            keep = torch.rand(feats.shape[:2], device=feats.device) >= rate
            return (feats * keep[:, :, None, None].to(feats.dtype), *args[1:])

        module.feat_encoder.register_forward_pre_hook(drop)

    def _attach_align_hook(self) -> None:
        """Keep one base-LM layer's attention queries and keys (after RoPE) for :meth:`loss`."""
        from voxcpm.modules.minicpm4.model import apply_rotary_pos_emb

        module = self.module
        layers = module.base_lm.layers
        if not 0 <= self.params.align_layer < len(layers):
            raise ConfigError(
                f"backbone voxcpm2: align_layer={self.params.align_layer} but the LM has "
                f"{len(layers)} layers"
            )
        attn = layers[self.params.align_layer].self_attn
        self._attn: Any = None

        def keep(mod: Any, _args: Any, kwargs: dict[str, Any], output: Any) -> None:
            if not module.training:
                return
            hidden = kwargs["hidden_states"]
            bsz, q_len, _ = hidden.shape
            q = mod.q_proj(hidden).view(bsz, q_len, mod.num_heads, mod.head_dim).transpose(1, 2)
            keys = output[1][0]
            cos, sin = kwargs["position_emb"]
            q, _ = apply_rotary_pos_emb(q, keys, cos, sin)
            self._attn = (q, keys)

        attn.register_forward_hook(keep, with_kwargs=True)

    def _require_loaded(self) -> Any:
        if self.module is None:
            raise ConfigError("backbone voxcpm2 is not loaded: call load(device) first")
        return self.module

    # ------------------------------------------------------------------ adapters
    def target_modules(self, scope: str) -> list[str]:
        """Attention q/k/v/o of base + residual LM (``lm``), of the LocDiT (``decoder``), or both
        (``all``) — the VoxCPM2 LoRA recipe; feed-forward layers, LocEnc and the VAE excluded."""
        import torch

        prefixes = {
            "lm": ("base_lm.", "residual_lm."),
            "decoder": ("feat_decoder.estimator.",),
            "all": ("base_lm.", "residual_lm.", "feat_decoder.estimator."),
        }
        if scope not in prefixes:
            raise ConfigError(
                f"unknown adapter scope '{scope}' for backbone voxcpm2; expected one of "
                f"{', '.join(prefixes)}"
            )
        names = []
        for name, mod in self._require_loaded().named_modules():
            # after PEFT injection a target is a LoRA wrapper around its nn.Linear ``base_layer``
            linear = isinstance(mod, torch.nn.Linear) or isinstance(
                getattr(mod, "base_layer", None), torch.nn.Linear
            )
            if not linear or not name.startswith(prefixes[scope]):
                continue
            if name.rsplit(".", 1)[-1] in _ATTENTION and ".self_attn." in name:
                names.append(name)
        return names

    def frozen_modules(self) -> list[str]:
        return ["audio_vae"]

    def save_adapter(self, path: Path) -> None:
        from ttsadapt.training.adapters import save_adapter

        save_adapter(self._require_loaded(), Path(path))

    def load_adapter(self, path: Path) -> None:
        from ttsadapt.training.adapters import load_adapter

        load_adapter(self._require_loaded(), Path(path))

    def export_adapter(self, path: Path) -> None:
        """voxcpm's own format: ``lora_weights.safetensors`` + ``lora_config.json``."""
        from ._lora import export_voxcpm_lora

        export_voxcpm_lora(self._require_loaded(), Path(path), base_model=self.params.model)

    def save_pretrained(self, path: Path) -> Path:
        """Save the base model (LoRA layers folded back to plain names, adapters not merged) in
        the upstream folder layout; ``model=<that folder>`` loads it back."""
        from ._io import save_folder

        codec_entry = self.config.get("ttsadapt_codec")
        cfg = {k: v for k, v in self.config.items() if k != "ttsadapt_codec"}
        return save_folder(self._require_loaded(), self.tokenizer, cfg, codec_entry, Path(path))

    # ------------------------------------------------------------------ text
    def _tagged(self, text: str, language: str | None) -> str:
        text = " ".join(text.split())
        if self.params.language_tags and language:
            return f"[{language}] {text}"
        return text

    def _model_text(self, text: str, language: str | None) -> str:
        """What the tokenizer reads: the tagged text, or the tagged espeak-ng phonemes."""
        text = " ".join(text.split())
        if getattr(self, "phoneme_input", False) and text:
            from .._phonemes import phonemize

            try:
                text = phonemize(text, language or "en")
            except ItemError as exc:
                raise ItemError(f"voxcpm2 phoneme input: {exc}") from exc
        return self._tagged(text, language)

    def _text_ids(self, text: str) -> list[int]:
        return list(self._require_loaded().text_tokenizer(text))

    def token_count(self, text: str) -> int:
        return len(self._text_ids(self._model_text(text, None)))

    # ------------------------------------------------------------------ training
    def _encode_audio(self, audio: np.ndarray, pad_left: bool = False) -> Any:
        """Mono audio at the codec rate → ``[patches, P, D]`` latent patches (upstream padding)."""
        import torch

        module = self._require_loaded()
        vae = module.audio_vae
        patch = module.patch_size
        patch_len = patch * module.chunk_size
        x = torch.from_numpy(np.asarray(audio, dtype=np.float32)).unsqueeze(0)
        if x.shape[1] % patch_len:
            pad = patch_len - x.shape[1] % patch_len
            x = torch.nn.functional.pad(x, (pad, 0) if pad_left else (0, pad))
        with torch.no_grad():
            feat = vae.encode(x.unsqueeze(1).to(self.device), module._encode_sample_rate).cpu()
        return feat.float().view(vae.latent_dim, -1, patch).permute(1, 2, 0).contiguous()

    def _load_clip_audio(self, path: Path) -> np.ndarray:
        from ttsadapt.audio import load_audio

        module = self._require_loaded()
        audio, _ = load_audio(path, target_sr=module._encode_sample_rate)
        if audio.size == 0 or not np.isfinite(audio).all():
            raise ItemError(f"{path}: audio is empty or contains NaN/inf")
        return audio

    def prepare(self, clips: Sequence[Clip]) -> list[Any]:
        """Encode each clip (text ids with its language tag, codec latents, reference latents when
        the clip has ``ref_audio``). A clip that cannot be used is left out and listed as
        ``(clip id, reason)`` in ``last_prepare_errors`` (this call) and ``prepare_errors`` (every
        call: the runner counts them in the run summary and names them in
        ``dropped_clips.jsonl``)."""
        import torch

        from ._data import VoxCPMExample

        examples = []
        self.last_prepare_errors = []
        for clip in clips:
            try:
                ids = self._text_ids(self._model_text(clip.text, clip.language))
                if not ids:
                    raise ItemError("empty transcript")
                feats = self._encode_audio(self._load_clip_audio(clip.audio))
                ref = None
                if self.params.use_reference_audio and clip.speaker_prompt is not None:
                    ref = self._encode_audio(self._load_clip_audio(clip.speaker_prompt))
                examples.append(
                    VoxCPMExample(clip.id, torch.tensor(ids, dtype=torch.long), feats, ref)
                )
            except (ItemError, ValueError, OSError) as exc:
                self.last_prepare_errors.append((clip.id, str(exc)))
                self.prepare_errors.append((clip.id, str(exc)))
                log.warning("voxcpm2: skipping clip %s: %s", clip.id, exc)
        if clips and not examples:
            raise DataError(
                f"voxcpm2.prepare: none of {len(clips)} clips could be used; first error: "
                f"{self.last_prepare_errors[0]}"
            )
        return examples

    def collate(self, examples: Sequence[Any]) -> dict[str, Any]:
        from ._data import collate_examples

        return collate_examples(examples)

    def loss(self, batch: dict[str, Any]) -> dict[str, Any]:
        """voxcpm's training forward: ``loss = λ_diff·loss_diff + λ_stop·loss_stop``."""
        module = self._require_loaded()
        out = module(
            batch["text_tokens"],
            batch["text_mask"],
            batch["audio_feats"],
            batch["audio_mask"],
            batch["loss_mask"],
            batch["position_ids"],
            batch["labels"],
            progress=float(batch.get("progress", 0.0)),
        )
        diff, stop = out["loss/diff"], out["loss/stop"]
        total = self.params.lambda_diff * diff + self.params.lambda_stop * stop
        parts = {"loss": total, "loss_diff": diff, "loss_stop": stop}
        if self.params.align_weight > 0 and module.training and self._attn is not None:
            align = self._align_loss(batch, *self._attn)
            parts["loss"] = total + self.params.align_weight * align
            parts["loss_align"] = align
            self._attn = None
        return parts

    def _align_loss(self, batch: dict[str, Any], queries: Any, keys: Any) -> Any:
        """Forward-sum alignment (CTC) over the attention of one LM layer: for the state that
        conditions each target patch (one position earlier), the head-averaged attention
        distribution over the text tokens after the language tag, plus a blank, must walk through
        the tokens in order (targets 1..N). The LM cannot satisfy it from the audio it has heard:
        only by attending to the right text — the alignment a small TTS otherwise learns last."""
        import math

        import torch

        from ._data import AUDIO_START, REF_END

        tokens = batch["text_tokens"].long()
        text_mask = batch["text_mask"].bool()
        loss_mask = batch["loss_mask"].bool()
        groups = queries.shape[1] // keys.shape[1]
        keys = keys.repeat_interleave(groups, dim=1)
        scale = 1.0 / math.sqrt(queries.shape[-1])
        tag_end = self._tag_end_id()
        inputs, in_lens, tgt_lens = [], [], []
        for b in range(tokens.shape[0]):
            row = tokens[b]
            start = int((row == AUDIO_START).nonzero()[0, 0])
            ref = (row[:start] == REF_END).nonzero()
            first = int(ref[-1, 0]) + 1 if len(ref) else 0
            text_pos = torch.arange(first, start, device=row.device)[text_mask[b, first:start]]
            if tag_end is not None:
                ends = (row[text_pos] == tag_end).nonzero()
                if len(ends):
                    text_pos = text_pos[int(ends[0, 0]) + 2 :]  # "] " closes the tag
            query_pos = loss_mask[b].nonzero()[:, 0] - 1  # the state before each target patch
            if len(text_pos) == 0 or len(query_pos) < len(text_pos):
                continue
            q = queries[b][:, query_pos].float()  # [H, Tq, d]
            k = keys[b][:, text_pos].float()  # [H, N, d]
            logp = (q @ k.transpose(1, 2) * scale).log_softmax(-1)
            logp = logp.logsumexp(0) - math.log(logp.shape[0])  # mean of the heads' probabilities
            blank = torch.full_like(logp[:, :1], -1.0)
            inputs.append(torch.cat([blank, logp], dim=1).log_softmax(-1))
            in_lens.append(len(query_pos))
            tgt_lens.append(len(text_pos))
        if not inputs:
            return queries.sum() * 0.0
        width = max(x.shape[1] for x in inputs)
        padded = torch.nn.utils.rnn.pad_sequence(
            [torch.nn.functional.pad(x, (0, width - x.shape[1]), value=-1e4) for x in inputs]
        )  # [T, B, 1 + N_max]
        targets = torch.cat([torch.arange(1, n + 1) for n in tgt_lens])
        return torch.nn.functional.ctc_loss(
            padded,
            targets,
            torch.tensor(in_lens),
            torch.tensor(tgt_lens),
            blank=0,
            reduction="mean",
            zero_infinity=True,
        )

    def _tag_end_id(self) -> int | None:
        if not self.params.language_tags:
            return None
        ids = self._text_ids("]")
        return ids[0] if len(ids) == 1 else None

    # ------------------------------------------------------------------ synthesis
    def _request_mode(self, req: SynthesisRequest, mode: str) -> str:
        has_audio = req.prompt_audio is not None and np.size(req.prompt_audio) > 0
        has_text = bool(req.prompt_text and req.prompt_text.strip())
        wanted = mode
        if mode in ("continuation", "clone+continuation") and not (has_audio and has_text):
            mode = "clone" if has_audio else "plain"
        if mode == "clone" and not has_audio:
            mode = "plain"
        if mode != wanted:
            note = f"mode '{wanted}' needs prompt audio{' and text' if 'cont' in wanted else ''}"
            self.last_synthesis_notes.append((req.id, f"{note}; used '{mode}'"))
        return mode

    def _write_prompt(self, req: SynthesisRequest, folder: Path) -> str:
        from ttsadapt.audio import resample, to_mono_float, write_audio

        module = self._require_loaded()
        sr = int(req.prompt_sample_rate or module._encode_sample_rate)
        audio = resample(
            to_mono_float(np.asarray(req.prompt_audio)), sr, module._encode_sample_rate
        )
        path = folder / f"{abs(hash(req.id))}.wav"
        write_audio(path, audio, module._encode_sample_rate)
        return str(path)

    @classmethod
    def resolve_synthesis(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """The given decoding settings, validated (``pydantic.ValidationError`` on an unknown key
        or a bad value); only the keys given are returned."""
        return VoxCPM2Synthesis.model_validate(settings).model_dump(exclude_unset=True)

    def synthesize(
        self, requests: Sequence[SynthesisRequest], settings: dict[str, Any] | None = None
    ) -> list[np.ndarray]:
        """voxcpm's ``generate`` per request. ``settings`` may override ``mode``, ``cfg_value``,
        ``inference_timesteps``, ``min_len``, ``max_len``, ``max_len_ratio``; ``int8 = true``
        generates with base_lm and residual_lm dynamically quantised (on a copy). A request missing
        the prompt its mode needs falls back (continuation → clone → plain), noted in
        ``last_synthesis_notes``."""
        import torch

        module = self._require_loaded()
        try:
            given = self.resolve_synthesis(dict(settings or {}))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            known = sorted(VoxCPM2Synthesis.model_fields)
            if err["type"] == "extra_forbidden":
                raise ConfigError(
                    f"unknown voxcpm2 decoding settings [{where!r}]; known: {known}"
                ) from None
            raise ConfigError(
                f"voxcpm2 decoding setting {where!r}: {err['msg']} (got {err.get('input')!r})"
            ) from None
        int8 = bool(given.pop("int8", False))
        settings = {k: v for k, v in given.items() if v is not None}
        generator = module
        if int8:
            require_cpu(self.name, self.device)
            generator = self._int8.get(module, INT8_SUBMODULES)
        s = self.params.model_copy(update=settings)
        was_training = module.training
        module.eval()
        self.last_synthesis_notes = []
        outputs = []
        try:
            with tempfile.TemporaryDirectory(prefix="voxcpm2-prompt-") as tmp:
                for req in requests:
                    mode = self._request_mode(req, s.mode)
                    kwargs: dict[str, Any] = {}
                    target = " ".join(req.text.split())
                    if mode in ("clone", "clone+continuation"):
                        kwargs["reference_wav_path"] = self._write_prompt(req, Path(tmp))
                    if mode in ("continuation", "clone+continuation"):
                        kwargs["prompt_wav_path"] = kwargs.get("reference_wav_path") or (
                            self._write_prompt(req, Path(tmp))
                        )
                        kwargs["prompt_text"] = self._model_text(
                            req.prompt_text or "", req.language
                        )
                        kwargs["prompt_text"] += " "
                    else:
                        target = self._model_text(target, req.language)
                    wav = generator.generate(
                        target_text=target,
                        min_len=s.min_len,
                        max_len=s.max_len,
                        inference_timesteps=s.inference_timesteps,
                        cfg_value=s.cfg_value,
                        retry_badcase=False,
                        retry_badcase_ratio_threshold=s.max_len_ratio,
                        **kwargs,
                    )
                    audio = wav.detach().to(torch.float32).cpu().numpy().reshape(-1)
                    outputs.append(np.clip(audio, -1.0, 1.0).astype(np.float32))
        finally:
            module.train(was_training)
        return outputs

    # ------------------------------------------------------------------ preferences
    def sample_groups(
        self,
        requests: Sequence[SynthesisRequest],
        k: int,
        settings: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> list[list[Any]]:
        """``k`` Flow-GRPO rollouts per request in one batched decode (``_flow_preference``)."""
        from ._flow_preference import sample_groups

        return sample_groups(self, requests, k, settings, seed)

    def rollout_logprobs(self, rollouts: Sequence[Any]) -> Any:
        """Summed SDE-step log-probs of each rollout under the current parameters."""
        from ._flow_preference import rollout_logprobs

        return rollout_logprobs(self, rollouts)

    def rollout_stats(self, rollouts: Sequence[Any], with_kl: bool) -> dict[str, Any]:
        """logprob, exact entropy and closed-form KL of the SDE steps (``_flow_preference``)."""
        from ._flow_preference import rollout_stats

        return rollout_stats(self, rollouts, with_kl)

    def preference_scores(self, rollouts: Sequence[Any], seed: int) -> Any:
        """Diffusion-DPO score: minus the summed flow-matching loss (+ stop-head term)."""
        from ._flow_preference import preference_scores

        return preference_scores(self, rollouts, seed)


@hookimpl
def ttsadapt_register_backbones():
    return [VoxCPM2Backbone]
