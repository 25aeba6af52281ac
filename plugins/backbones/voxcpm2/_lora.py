"""Export a PEFT LoRA adapter of a VoxCPM2 module in voxcpm's own LoRA format.

voxcpm's format (what its fine-tuning script writes and ``VoxCPM2Model.load_lora_weights`` /
``VoxCPM(..., lora_weights_path=...)`` read): a folder with ``lora_weights.safetensors`` holding
``<layer>.lora_A`` ``[r, in]`` and ``<layer>.lora_B`` ``[out, r]`` for each adapted linear layer,
and ``lora_config.json`` = ``{"base_model": ..., "lora_config": LoRAConfig(...)}``. voxcpm wraps
*every* linear layer whose attribute name is listed (``target_modules_lm`` in base + residual
LM, ``target_modules_dit`` in the LocDiT, ``target_proj_modules`` on the model) and scales by
``alpha / r`` like PEFT, so a PEFT adapter converts exactly; layers PEFT did not adapt keep
voxcpm's zero-initialised ``lora_B`` and contribute nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ttsadapt.errors import ConfigError

from ._import import import_voxcpm2

WEIGHTS_FILE = "lora_weights.safetensors"
CONFIG_FILE = "lora_config.json"
_LM_PREFIXES = ("base_lm.", "residual_lm.")
_DIT_PREFIX = "feat_decoder.estimator."


def peft_lora_config(module: torch.nn.Module) -> Any:
    """The ``LoraConfig`` injected into ``module`` (ttsadapt's adapters helper, else PEFT's)."""
    try:
        from ttsadapt.training.adapters import lora_config_of

        cfg = lora_config_of(module)
        if cfg is not None:
            return cfg
    except ImportError:  # pragma: no cover - the helper module is part of ttsadapt
        pass
    peft_cfg = getattr(module, "peft_config", None) or {}
    return peft_cfg.get("default")


def to_voxcpm_lora(module: torch.nn.Module) -> tuple[dict[str, torch.Tensor], Any]:
    """(voxcpm-named LoRA tensors, voxcpm ``LoRAConfig``) for the PEFT adapter in ``module``."""
    from peft import get_peft_model_state_dict

    vox = import_voxcpm2()
    cfg = peft_lora_config(module)
    if cfg is None:
        raise ConfigError("export_adapter: the VoxCPM2 module carries no LoRA adapter")
    problems = []
    if getattr(cfg, "rank_pattern", None) or getattr(cfg, "alpha_pattern", None):
        problems.append("per-layer rank/alpha patterns")
    if getattr(cfg, "use_rslora", False):
        problems.append("rsLoRA scaling")
    if getattr(cfg, "use_dora", False):
        problems.append("DoRA")
    if getattr(cfg, "bias", "none") != "none":
        problems.append(f"bias='{cfg.bias}'")
    alpha = float(cfg.lora_alpha)
    if alpha != int(alpha):
        problems.append(f"non-integer alpha {alpha}")
    if problems:
        raise ConfigError(
            f"voxcpm's LoRA format cannot express this adapter ({', '.join(problems)}); "
            "use save_adapter (PEFT format) instead"
        )
    peft_state = get_peft_model_state_dict(module)
    tensors: dict[str, torch.Tensor] = {}
    lm_names: set[str] = set()
    dit_names: set[str] = set()
    proj_names: set[str] = set()
    proj_allowed = set(vox.LoRAConfig().target_proj_modules)
    for key, value in peft_state.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}.weight"
            if key.endswith(marker):
                layer = key[: -len(marker)]
                break
        else:
            raise ConfigError(f"export_adapter: unexpected adapter tensor '{key}'")
        short = layer.rsplit(".", 1)[-1]
        if layer.startswith(_LM_PREFIXES):
            lm_names.add(short)
        elif layer.startswith(_DIT_PREFIX):
            dit_names.add(short)
        elif layer in proj_allowed:
            proj_names.add(layer)
        else:
            raise ConfigError(
                f"voxcpm's LoRA format cannot hold an adapter on '{layer}': it covers the base "
                "and residual LM, the LocDiT and the projections "
                f"{sorted(proj_allowed)} only"
            )
        tensors[f"{layer}.{part}"] = value.detach().to(torch.float32).contiguous().cpu()
    order = ["q_proj", "v_proj", "k_proj", "o_proj"]

    def ordered(names: set[str]) -> list[str]:
        return [n for n in order if n in names] + sorted(names - set(order))

    vox_cfg = vox.LoRAConfig(
        enable_lm=bool(lm_names),
        enable_dit=bool(dit_names),
        enable_proj=bool(proj_names),
        r=int(cfg.r),
        alpha=int(alpha),
        dropout=float(cfg.lora_dropout),
        target_modules_lm=ordered(lm_names) or list(vox.LoRAConfig().target_modules_lm),
        target_modules_dit=ordered(dit_names) or list(vox.LoRAConfig().target_modules_dit),
        target_proj_modules=sorted(proj_names) or list(proj_allowed),
    )
    return tensors, vox_cfg


def export_voxcpm_lora(module: torch.nn.Module, folder: Path, base_model: str) -> Path:
    """Write ``lora_weights.safetensors`` + ``lora_config.json`` into ``folder`` (atomically)."""
    from safetensors.torch import save_file

    tensors, vox_cfg = to_voxcpm_lora(module)
    from ttsadapt.records import atomic_folder

    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        payload = {"base_model": base_model, "lora_config": vox_cfg.model_dump(mode="json")}
        (tmp / CONFIG_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return folder
