"""Checkpoints: the trainable weights of a module plus the state needed to resume.

Layout under ``ctx.checkpoint_dir``::

    step-000500/
        trainable.safetensors   every parameter with requires_grad (LoRA matrices, or all for full FT)
        training_state.pt       optimizer, scheduler and RNG state (kept in the two newest only)
        meta.json               {"step", "val_loss", "dev_score", "train_loss", "tensors": {name: shape}}

A checkpoint is written into ``.step-000500.partial/`` and renamed into place once complete, so a run
killed mid-save leaves a ``.partial`` folder that is ignored (and removed) on resume.

Nothing in a results folder runs code when it is read: weights are safetensors, and
``training_state.pt`` holds only tensors and plain data (dicts, lists, tuples, numbers, strings,
``None``) and is read with ``torch.load(weights_only=True)``. The RNG states are stored in that
form (Python's ``random`` state as a list of ints, NumPy's Mersenne-Twister key as an int64
tensor) and rebuilt exactly on load, so a resumed run continues bit for bit. Saving anything else
is refused when it is written; a state file holding anything else (a pickled object whose loading
would run code) is refused when it is read, with a :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..records import atomic_write_bytes, atomic_write_json
from .errors import CheckpointError

WEIGHTS_FILE = "trainable.safetensors"
STATE_FILE = "training_state.pt"
META_FILE = "meta.json"
STATE_FORMAT = 2  # 2: plain data only, loaded with weights_only=True (1: a full pickle)
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
    except Exception as exc:  # safetensors raises its own types
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


# --------------------------------------------------------------------------- safe training state


def encode_rng(state: dict[str, Any]) -> dict[str, Any]:
    """:func:`ttsadapt.training.seeding.rng_state` as tensors and plain data only."""
    out: dict[str, Any] = {}
    if "python" in state:
        version, internal, gauss_next = state["python"]
        out["python"] = {
            "version": int(version),
            "state": [int(v) for v in internal],
            "gauss_next": gauss_next,
        }
    if "numpy" in state:
        name, key, pos, has_gauss, cached = state["numpy"]
        out["numpy"] = {
            "bit_generator": str(name),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        }
    if "torch" in state:
        out["torch"] = state["torch"]
    if "cuda" in state:
        out["cuda"] = list(state["cuda"])
    return out


def decode_rng(encoded: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode_rng`: what :func:`ttsadapt.training.seeding.set_rng_state` takes."""
    out: dict[str, Any] = {}
    if "python" in encoded:
        py = encoded["python"]
        out["python"] = (int(py["version"]), tuple(int(v) for v in py["state"]), py["gauss_next"])
    if "numpy" in encoded:
        npy = encoded["numpy"]
        out["numpy"] = (
            npy["bit_generator"],
            npy["key"].numpy().astype(np.uint32),
            int(npy["pos"]),
            int(npy["has_gauss"]),
            float(npy["cached_gaussian"]),
        )
    if "torch" in encoded:
        out["torch"] = encoded["torch"]
    if "cuda" in encoded:
        out["cuda"] = list(encoded["cuda"])
    return out


def _plain(value: Any, where: str) -> Any:
    """``value`` as tensors and plain data (NumPy scalars become numbers); anything else raises."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise CheckpointError(
                    f"training state at {where}: key {k!r} ({type(k).__name__}) is not a string "
                    "or an integer; it cannot be stored as plain data"
                )
            out[k] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    raise CheckpointError(
        f"training state at {where} is a {type(value).__module__}.{type(value).__qualname__}; "
        "only tensors and plain data (dict, list, tuple, number, string, None) are saved, so "
        "that loading a checkpoint never runs code"
    )


def encode_training_state(state: dict[str, Any]) -> dict[str, Any]:
    """The training state as tensors and plain data, ready for ``torch.save``."""
    out = {k: v for k, v in state.items() if k != "rng"}
    if "rng" in state:
        out["rng"] = encode_rng(state["rng"])
    out["format"] = STATE_FORMAT
    return _plain(out, "training_state")


def decode_training_state(state: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in state.items() if k != "format"}
    if "rng" in out:
        out["rng"] = decode_rng(out["rng"])
    return out


def read_training_state(state_file: Path) -> dict[str, Any]:
    """Read a ``training_state.pt`` with ``weights_only=True``; refuse anything that is not
    tensors and plain data (a pickled object that would run code when loaded)."""
    state_file = Path(state_file)
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = next(
            (ln.strip() for ln in str(exc).splitlines() if "Unsupported" in ln),
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )
        raise CheckpointError(
            f"refusing to load {state_file}: it holds more than tensors and plain data "
            f"({detail}), and loading it in full could run code. ttsadapt writes training state "
            "as plain data only; this file was written by something else (or by a ttsadapt "
            f"before training state format {STATE_FORMAT}). Delete the checkpoint folder "
            f"{state_file.parent} to resume from an earlier checkpoint, or its checkpoints "
            "folder to train from the start."
        ) from None
    except Exception as exc:
        raise CheckpointError(f"cannot read {state_file}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{state_file} is not a ttsadapt training state of format {STATE_FORMAT} "
            f"(found {found!r}); delete its checkpoint folder {state_file.parent} to resume "
            "from an earlier checkpoint"
        )
    try:
        return decode_training_state(state)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{state_file}: malformed training state: {exc}") from exc


def save_checkpoint(
    root: Path,
    step: int,
    module: torch.nn.Module,
    training_state: dict[str, Any] | None,
    meta: dict[str, Any],
) -> Path:
    """Write checkpoint ``step`` atomically (partial folder, then rename); returns its folder.

    Checkpoints older than the two newest lose their ``training_state.pt``. ``training_state``
    is stored as tensors and plain data (:func:`encode_training_state`); anything else raises
    :class:`CheckpointError` before a file is written.
    """
    from safetensors.torch import save

    root = Path(root)
    encoded = encode_training_state(training_state) if training_state is not None else None
    root.mkdir(parents=True, exist_ok=True)
    final = step_dir(root, step)
    partial = root / f".{final.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    state = trainable_state(module)
    atomic_write_bytes(partial / WEIGHTS_FILE, save(state))
    if encoded is not None:
        tmp = partial / (STATE_FILE + ".tmp")
        torch.save(encoded, tmp)
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
    found: list[SavedCheckpoint] = []
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
    return read_training_state(state_file)
