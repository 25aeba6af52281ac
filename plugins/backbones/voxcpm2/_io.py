"""Build, save and load VoxCPM2 models in the upstream folder layout.

Upstream layout (``openbmb/VoxCPM2`` on the hub): ``config.json`` (``architecture: voxcpm2``),
tokenizer files (``tokenizer.json``, ``tokenizer_config.json``, ...), ``model.safetensors`` (or
``pytorch_model.bin``) without the VAE, and ``audiovae.safetensors`` (or ``audiovae.pth``).
A model whose codec is ttsadapt's mel front end stores ``"ttsadapt_codec": {"kind": "mel", ...}``
in ``config.json`` (upstream's pydantic config ignores the extra key) and has no VAE file.

Loading checks the weights strictly: missing tensors, unexpected tensors and shape mismatches
are :class:`~ttsadapt.errors.ConfigError` naming the file and the first offending tensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ttsadapt.errors import ConfigError

from ._config import ARCHITECTURE, MetaTokenizer
from ._import import import_voxcpm2
from ._mel import MelCodec, MelCodecConfig

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
VAE_FILES = ("audiovae.safetensors", "audiovae.pth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
CODEC_KEY = "ttsadapt_codec"


def resolve_model_path(model: str, revision: str | None = None) -> Path:
    """``reference`` (the embedded pre-trained tiny model), a local folder as is; anything else is a
    hub id fetched with ``snapshot_download``."""
    if model == "reference":
        from .reference import REFERENCE_DIR

        if not (REFERENCE_DIR / CONFIG_FILE).is_file():
            raise ConfigError(
                f"the embedded reference model is missing ({REFERENCE_DIR}); make it with "
                "`python -m ttsadapt.plugins.backbones.voxcpm2.reference`"
            )
        return REFERENCE_DIR
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(
                f"backbone param model='{model}' is a file; expected a folder in the upstream "
                "VoxCPM2 layout (config.json, tokenizer, model.safetensors, audiovae.*) or a hub id"
            )
        return path
    if model.count("/") != 1 or model.startswith((".", "/", "~")):
        raise ConfigError(
            f"backbone param model='{model}': no such folder, and not a hub id of the form "
            "'org/name' (e.g. 'openbmb/VoxCPM2'); use 'tiny' for the offline test model"
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=model, revision=revision))
    except Exception as exc:  # offline, unknown repo, gated, ...
        raise ConfigError(
            f"could not fetch VoxCPM2 '{model}' from the Hugging Face Hub ({type(exc).__name__}: "
            f"{exc}). Offline (HF_HUB_OFFLINE=1) only the local cache is used: download it once "
            f"(`hf download {model} --local-dir DIR`) and set model=DIR"
        ) from exc


def read_config(folder: Path) -> dict[str, Any]:
    cfg_file = folder / CONFIG_FILE
    if not cfg_file.is_file():
        raise ConfigError(
            f"{cfg_file} not found: a VoxCPM2 folder needs config.json, tokenizer files, "
            f"{' or '.join(WEIGHT_FILES)} and {' or '.join(VAE_FILES)}"
        )
    try:
        data = json.loads(cfg_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{cfg_file} is not valid JSON (a partial download?): {exc}") from exc
    arch = str(data.get("architecture", "voxcpm")).lower()
    if arch != ARCHITECTURE:
        raise ConfigError(
            f"{cfg_file}: architecture '{arch}' is not supported by the voxcpm2 backbone "
            f"(expected '{ARCHITECTURE}'; VoxCPM 1.x checkpoints need another backbone)"
        )
    return data


def build_model(
    config: dict[str, Any],
    tokenizer: Any,
    codec: torch.nn.Module,
    device: str,
    dtype: str = "float32",
    init_seed: int | None = None,
) -> torch.nn.Module:
    """``VoxCPM2Model`` from a config dict. ``device='meta'`` builds without allocating weights."""
    vox = import_voxcpm2()
    cfg = dict(config)
    cfg.pop(CODEC_KEY, None)
    cfg["dtype"] = dtype
    try:
        vcfg = vox.VoxCPMConfig.model_validate(cfg)
    except Exception as exc:  # pydantic ValidationError
        raise ConfigError(f"invalid VoxCPM2 config: {exc}") from exc
    if device == "meta":
        with torch.device("meta"):
            return vox.VoxCPM2Model(vcfg, tokenizer or MetaTokenizer(), codec, device="cpu")
    with torch.random.fork_rng(devices=[]):
        if init_seed is not None:
            torch.manual_seed(init_seed)
        model = vox.VoxCPM2Model(vcfg, tokenizer, codec, device=device)
    model = model.to(device)
    if dtype != "float32":
        model = model.to(getattr(torch, dtype))
        model.audio_vae.to(torch.float32)
    return model


def make_codec(kind: str, config: dict[str, Any] | None = None) -> torch.nn.Module:
    """A mel front end (``kind='mel'``) or voxcpm's AudioVAE (random init; weights load later)."""
    if kind == "mel":
        return MelCodec(MelCodecConfig(**(config or {})))
    vox = import_voxcpm2()
    if config:
        return vox.AudioVAEV2(config=vox.AudioVAEConfigV2.model_validate(config))
    return vox.AudioVAEV2()


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def _read_state(file: Path) -> dict[str, torch.Tensor]:
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(file))
        ckpt = torch.load(str(file), map_location="cpu", weights_only=True)
        return ckpt.get("state_dict", ckpt)
    except Exception as exc:  # truncated or corrupt file
        raise ConfigError(
            f"cannot read weights {file} ({type(exc).__name__}: {exc}); the file is truncated or "
            "corrupt (an interrupted download or save?) - fetch or save it again"
        ) from exc


def check_and_load(
    module: torch.nn.Module,
    state: dict[str, torch.Tensor],
    source: Path,
    skip_prefix: str | None = None,
) -> None:
    """Load ``state`` into ``module`` strictly; ConfigError names what does not fit."""
    expected = {
        k: v
        for k, v in module.state_dict().items()
        if skip_prefix is None or not k.startswith(skip_prefix)
    }
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs config {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if mismatched:
        raise ConfigError(
            f"{source}: {len(mismatched)} tensors do not match the shapes that config.json "
            f"describes (config and weights are from different models?): {mismatched[:3]}"
        )
    if missing or unexpected:
        raise ConfigError(
            f"{source}: weights do not fit the model - {len(missing)} missing "
            f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]} (a partial checkpoint "
            "or another model's weights?)"
        )
    module.load_state_dict(state, strict=False)


def load_folder(folder: Path, device: str, dtype: str, codec_choice: str) -> tuple[Any, Any, Any]:
    """(model, tokenizer, config dict) from a folder in the upstream layout."""
    from transformers import AutoTokenizer

    config = read_config(folder)
    weights = _first_existing(folder, WEIGHT_FILES)
    if weights is None:
        raise ConfigError(
            f"{folder}: no model weights ({' or '.join(WEIGHT_FILES)}); the folder is incomplete"
        )
    saved_codec = config.get(CODEC_KEY, {}).get("kind", "audiovae")
    kind = saved_codec if codec_choice == "auto" else codec_choice
    if kind != saved_codec:
        raise ConfigError(
            f"{folder}: codec='{codec_choice}' but the model was trained with the "
            f"'{saved_codec}' codec (its feature space); use codec='auto' or '{saved_codec}'"
        )
    vae_file = None
    if kind == "audiovae":
        vae_file = _first_existing(folder, VAE_FILES)
        if vae_file is None:
            raise ConfigError(
                f"{folder}: AudioVAE weights not found ({' or '.join(VAE_FILES)}); the folder is "
                "incomplete"
            )
    if _first_existing(folder, TOKENIZER_FILES) is None:
        raise ConfigError(f"{folder}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:
        raise ConfigError(f"{folder}: cannot load the tokenizer: {exc}") from exc
    codec_cfg = (
        config.get(CODEC_KEY, {}).get("config")
        if kind == "mel"
        else (config.get("audio_vae_config"))
    )
    codec = make_codec(kind, codec_cfg)
    model = build_model(config, tokenizer, codec, device=device, dtype=dtype)
    check_and_load(model, _read_state(weights), weights, skip_prefix="audio_vae.")
    if vae_file is not None:
        check_and_load(model.audio_vae, _read_state(vae_file), vae_file)
    return model, tokenizer, config


def base_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's weights under upstream names: PEFT's ``base_layer`` folded back, LoRA dropped."""
    out: dict[str, torch.Tensor] = {}
    for key, value in module.state_dict().items():
        if "lora_" in key or key.startswith("ttsadapt_"):  # adapters; pre-training-only heads
            continue
        out[key.replace(".base_layer.", ".")] = value.detach().contiguous().cpu()
    return out


def save_folder(
    module: torch.nn.Module,
    tokenizer: Any,
    config: dict[str, Any],
    codec_entry: dict[str, Any] | None,
    folder: Path,
) -> Path:
    """Write the upstream layout into ``folder`` atomically (temp folder, then rename)."""
    from safetensors.torch import save_file

    from ttsadapt.records import atomic_folder

    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        state = base_state_dict(module)
        vae = {k[len("audio_vae.") :]: v for k, v in state.items() if k.startswith("audio_vae.")}
        model_state = {k: v for k, v in state.items() if not k.startswith("audio_vae.")}
        save_file(model_state, str(tmp / WEIGHT_FILES[0]))
        if codec_entry is None and vae:
            save_file(vae, str(tmp / VAE_FILES[0]))
        tokenizer.save_pretrained(str(tmp))
        data = dict(config)
        data["architecture"] = ARCHITECTURE
        if codec_entry is not None:
            data[CODEC_KEY] = codec_entry
        else:
            data.pop(CODEC_KEY, None)
        (tmp / CONFIG_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return folder
