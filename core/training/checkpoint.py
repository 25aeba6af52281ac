"""Checkpoints: the trainable weights of a module plus the state needed to resume.

Layout under ``ctx.checkpoint_dir``::

    step-000500/
        trainable.safetensors   every parameter with requires_grad (LoRA matrices, or all for full FT)
        training_state.pt       optimizer, scheduler and RNG state (kept in the two newest only)
        meta.json               {"step", "val_loss", "dev_score", "train_loss", "tensors": {name: shape}}

A checkpoint is written into ``.step-000500.partial/`` and renamed into place once complete, so a run
killed mid-save leaves a ``.partial`` folder that is ignored (and removed) on resume.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..records import atomic_write_bytes, atomic_write_json
from .errors import CheckpointError

WEIGHTS_FILE = "trainable.safetensors"
STATE_FILE = "training_state.pt"
META_FILE = "meta.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")
log = logging.getLogger(__name__)


@dataclass
class SavedCheckpoint:
    step: int
    path: Path
    meta: dict[str, Any]


def step_dir(root: Path, step: int) -> Path:
    return Path(root) / f"step-{step:06d}"


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter of ``module`` that requires grad, detached on the CPU."""
    return {
        n: p.detach().to("cpu").contiguous()
        for n, p in module.named_parameters()
        if p.requires_grad
    }


def save_trainable(module: torch.nn.Module, path: Path) -> Path:
    """Write the trainable weights of ``module`` as one safetensors file at ``path``."""
    from safetensors.torch import save

    atomic_write_bytes(Path(path), save(trainable_state(module)))
    return Path(path)


def load_trainable(module: torch.nn.Module, path: Path) -> None:
    """Copy the tensors in safetensors file ``path`` into ``module``'s trainable parameters.

    Raises :class:`CheckpointError` naming the first tensor that is missing, unexpected, or has a
    shape that does not match the model.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint weights not found: {path}")
    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own types
        raise CheckpointError(f"cannot read checkpoint weights {path}: {exc}") from exc
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(state))
    unexpected = sorted(set(state) - set(params))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not fit the model: {len(missing)} trainable tensors missing "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}). Was it "
            "written by another method, scope or model config?"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(params[name].shape):
            raise CheckpointError(
                f"checkpoint {path}: tensor '{name}' has shape {tuple(tensor.shape)} but the model "
                f"expects {tuple(params[name].shape)}; the config (rank, width) does not match "
                "the weights"
            )
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor.to(device=params[name].device, dtype=params[name].dtype))


def save_checkpoint(
    root: Path,
    step: int,
    module: torch.nn.Module,
    training_state: dict[str, Any] | None,
    meta: dict[str, Any],
) -> Path:
    """Write checkpoint ``step`` atomically (partial folder, then rename); returns its folder.

    Checkpoints older than the two newest lose their ``training_state.pt``.
    """
    from safetensors.torch import save

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = step_dir(root, step)
    partial = root / f".{final.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    state = trainable_state(module)
    atomic_write_bytes(partial / WEIGHTS_FILE, save(state))
    if training_state is not None:
        tmp = partial / (STATE_FILE + ".tmp")
        torch.save(training_state, tmp)
        os.replace(tmp, partial / STATE_FILE)
    full_meta = dict(meta, step=step, tensors={n: list(t.shape) for n, t in state.items()})
    atomic_write_json(partial / META_FILE, full_meta)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    # keep the training state of the two newest checkpoints (resume survives one broken folder)
    for other in list_checkpoints(root)[:-2]:
        if (other.path / STATE_FILE).exists():
            (other.path / STATE_FILE).unlink()
    return final


def _incomplete_reason(path: Path) -> str | None:
    for f in (WEIGHTS_FILE, META_FILE):
        if not (path / f).is_file():
            return f"missing {f}"
    try:
        json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return f"{META_FILE} is not valid JSON"
    return None


def list_checkpoints(root: Path, warn: bool = False) -> list[SavedCheckpoint]:
    """Complete checkpoints under ``root`` by step; partial or broken folders are skipped."""
    root = Path(root)
    found = []
    if not root.is_dir():
        return found
    for child in sorted(root.iterdir()):
        match = _STEP_DIR.match(child.name)
        if not match or not child.is_dir():
            if warn and child.name.endswith(".partial"):
                log.warning("ignoring %s: a checkpoint save was interrupted", child)
            continue
        reason = _incomplete_reason(child)
        if reason:
            if warn:
                log.warning("ignoring checkpoint %s: %s", child, reason)
            continue
        meta = json.loads((child / META_FILE).read_text(encoding="utf-8"))
        found.append(SavedCheckpoint(int(match.group(1)), child, meta))
    return sorted(found, key=lambda c: c.step)


def last_resumable(root: Path) -> SavedCheckpoint | None:
    """The newest complete checkpoint that still holds its training state, if any."""
    for ckpt in reversed(list_checkpoints(root, warn=True)):
        if (ckpt.path / STATE_FILE).is_file():
            return ckpt
        log.warning("checkpoint %s has no %s; cannot resume from it", ckpt.path, STATE_FILE)
    return None


def load_checkpoint(path: Path, module: torch.nn.Module, with_state: bool = True) -> dict[str, Any]:
    """Load checkpoint folder ``path`` into ``module``; returns its training state (or ``{}``)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {path}")
    reason = _incomplete_reason(path)
    if reason:
        raise CheckpointError(
            f"checkpoint {path} is incomplete ({reason}); it was probably interrupted while "
            "saving. Delete it to resume from the previous checkpoint."
        )
    load_trainable(module, path / WEIGHTS_FILE)
    if not with_state:
        return {}
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(f"checkpoint {path} has no {STATE_FILE}: it cannot be resumed from")
    try:
        return torch.load(state_file, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"cannot read {state_file}: {exc}") from exc
