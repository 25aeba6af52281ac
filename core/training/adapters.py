"""LoRA adapters injected in place with PEFT, saved and loaded as one folder.

The backbone keeps running its own forward code: :func:`apply_lora` calls
``peft.inject_adapter_in_model`` on ``backbone.module`` and leaves only the LoRA matrices trainable.
An adapter folder is in PEFT's own layout, so ``peft.PeftModel.from_pretrained(base, folder)``
loads it: ``adapter_model.safetensors`` (PEFT's state dict: adapter name stripped, keys prefixed
``base_model.model.`` as a ``PeftModel`` saves them) and ``adapter_config.json`` (the
``LoraConfig``, with ``peft_type``); the config is written last, so a folder without it is an
interrupted save. Folders from before (``adapter.safetensors``, keys without the prefix) still load.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from peft import (
    LoraConfig,
    get_peft_model_state_dict,
    inject_adapter_in_model,
    set_peft_model_state_dict,
)

from ..errors import ConfigError
from ..records import atomic_write_bytes, atomic_write_text
from .errors import CheckpointError

WEIGHTS_FILE = "adapter_model.safetensors"  # PEFT's file name
LEGACY_WEIGHTS_FILE = "adapter.safetensors"  # before PEFT's layout: keys without PEFT_PREFIX
CONFIG_FILE = "adapter_config.json"
PEFT_PREFIX = "base_model.model."  # what a PeftModel puts in front of the wrapped model's names
_CONFIG_ATTR = "_ttsadapt_lora_config"


def exact_names_regex(names: list[str]) -> str:
    """A PEFT ``target_modules`` regex that matches exactly ``names`` (full-match semantics)."""
    return "(?:" + "|".join(re.escape(n) for n in names) + ")"


def apply_lora(
    backbone: Any,
    scope: str,
    rank: int,
    alpha: float | None = None,
    dropout: float = 0.0,
    targets: list[str] | None = None,
) -> LoraConfig:
    """Inject a zero-initialised LoRA adapter into ``backbone.module`` and freeze everything else.

    ``targets`` (fully qualified ``nn.Linear`` names) default to ``backbone.target_modules(scope)``;
    ``alpha`` defaults to ``2 * rank``. Raises :class:`ConfigError` when the targets match no layer,
    name a layer that is not ``nn.Linear``, or when ``rank`` exceeds a targeted layer's width.
    """
    module = backbone.module
    if module is None:
        raise ConfigError(f"backbone '{backbone.name}' is not loaded: call load(device) first")
    if rank < 1:
        raise ConfigError(f"LoRA rank must be >= 1, got {rank}")
    names = list(targets) if targets is not None else list(backbone.target_modules(scope))
    if not names:
        raise ConfigError(
            f"LoRA target modules for scope '{scope}' of backbone '{backbone.name}' are empty: "
            "nothing to adapt. Pick another scope or list targets explicitly."
        )
    layers = dict(module.named_modules())
    missing = [n for n in names if n not in layers]
    if missing:
        raise ConfigError(
            f"LoRA target modules match nothing in backbone '{backbone.name}': "
            f"{missing[:5]}{' ...' if len(missing) > 5 else ''} ({len(missing)} of {len(names)} "
            "names). Use backbone.target_modules(scope) for valid names."
        )
    for n in names:
        layer = layers[n]
        if not isinstance(layer, torch.nn.Linear):
            raise ConfigError(
                f"LoRA target '{n}' is a {type(layer).__name__}, expected torch.nn.Linear"
            )
        width = min(layer.in_features, layer.out_features)
        if rank > width:
            raise ConfigError(
                f"LoRA rank {rank} is larger than layer '{n}' "
                f"({layer.in_features} -> {layer.out_features}); use rank <= {width}"
            )
    config = LoraConfig(
        r=rank,
        # peft annotates an int, but the scale is lora_alpha / r: a fractional alpha is valid
        lora_alpha=float(alpha if alpha is not None else 2 * rank),  # type: ignore[arg-type]
        lora_dropout=dropout,
        target_modules=exact_names_regex(names),
        bias="none",
        init_lora_weights=True,  # A Kaiming-uniform, B zero: the adapted model starts as the base
    )
    inject_adapter_in_model(config, module)
    for pname, param in module.named_parameters():
        param.requires_grad_("lora_" in pname)
    setattr(module, _CONFIG_ATTR, config)
    return config


def lora_config_of(module: torch.nn.Module) -> LoraConfig | None:
    """The config :func:`apply_lora` injected into ``module`` (None when it has no adapter)."""
    return getattr(module, _CONFIG_ATTR, None)


def _config_to_json(config: LoraConfig) -> str:
    data = config.to_dict()
    for key, value in list(data.items()):
        if isinstance(value, set):
            data[key] = sorted(value)
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


def save_adapter(module: torch.nn.Module, path: Path, config: LoraConfig | None = None) -> Path:
    """Write the adapter of ``module`` to folder ``path``; returns the folder."""
    from safetensors.torch import save

    config = config or lora_config_of(module)
    if config is None:
        raise CheckpointError("save_adapter: the module carries no LoRA adapter (apply_lora first)")
    path = Path(path)
    state = {
        PEFT_PREFIX + k: v.detach().contiguous().cpu()
        for k, v in get_peft_model_state_dict(module).items()
    }
    atomic_write_bytes(path / WEIGHTS_FILE, save(state, metadata={"format": "pt"}))
    legacy = path / LEGACY_WEIGHTS_FILE
    if legacy.is_file():  # an older save in the same folder would shadow nothing, but mislead
        legacy.unlink()
    atomic_write_text(path / CONFIG_FILE, _config_to_json(config))
    return path


def weights_file(path: Path) -> Path | None:
    """The adapter weights in folder ``path``: PEFT's file, else the older ttsadapt one."""
    for name in (WEIGHTS_FILE, LEGACY_WEIGHTS_FILE):
        if (Path(path) / name).is_file():
            return Path(path) / name
    return None


def read_adapter_state(path: Path) -> dict[str, torch.Tensor]:
    """The adapter's tensors under the wrapped model's own names (no ``base_model.model.``)."""
    from safetensors.torch import load_file

    file = weights_file(path)
    if file is None:
        raise CheckpointError(f"adapter folder {path} has no {WEIGHTS_FILE}")
    state = load_file(str(file))
    return {k.removeprefix(PEFT_PREFIX): v for k, v in state.items()}


def read_adapter_config(path: Path) -> LoraConfig:
    """The ``LoraConfig`` stored in adapter folder ``path``."""
    path = Path(path)
    cfg_file = path / CONFIG_FILE
    if weights_file(path) is None or not cfg_file.is_file():
        present = {WEIGHTS_FILE: weights_file(path) is not None, CONFIG_FILE: cfg_file.is_file()}
        absent = [name for name, there in present.items() if not there]
        raise CheckpointError(
            f"adapter folder {path} is missing {', '.join(absent)} (an interrupted save, or not an "
            "adapter folder); point to a folder written by save_adapter"
        )
    try:
        data = json.loads(cfg_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg_file} is not valid JSON: {exc}") from exc
    known = set(LoraConfig.__dataclass_fields__)
    return LoraConfig(**{k: v for k, v in data.items() if k in known})


def load_adapter(module: torch.nn.Module, path: Path) -> LoraConfig:
    """Load the adapter in folder ``path`` into ``module`` (injecting it first when absent).

    Raises :class:`CheckpointError` naming the tensor when shapes or names do not fit the model.
    """
    path = Path(path)
    config = read_adapter_config(path)
    if lora_config_of(module) is None:
        try:
            inject_adapter_in_model(config, module)
        except ValueError as exc:
            raise CheckpointError(
                f"adapter {path} targets modules this model does not have: {exc}"
            ) from exc
        for pname, param in module.named_parameters():
            param.requires_grad_("lora_" in pname)
        setattr(module, _CONFIG_ATTR, config)
    state = read_adapter_state(path)
    current = get_peft_model_state_dict(module)
    missing = sorted(set(current) - set(state))
    unexpected = sorted(set(state) - set(current))
    if missing or unexpected:
        raise CheckpointError(
            f"adapter {path} does not fit the model: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]} ({len(missing)} missing, {len(unexpected)} unexpected tensors)"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(current[key].shape):
            raise CheckpointError(
                f"adapter {path}: tensor '{key}' has shape {tuple(tensor.shape)} but the model "
                f"expects {tuple(current[key].shape)} (was it saved with another rank or model?)"
            )
    set_peft_model_state_dict(module, state)
    return config


def adapter_size_bytes(path: Path) -> int:
    """Bytes on disk of an adapter file or folder (all files in it)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
