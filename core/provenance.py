"""Provenance stored with every run: code version, package versions, device, host, timings."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__

PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "numpy",
    "scipy",
    "onnxruntime",
    "faster-whisper",
    "ctranslate2",
    "resemblyzer",
    "speechmos",
    "voxcpm",
    "librosa",
    "soundfile",
    "pluggy",
    "pydantic",
)


@functools.lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The commit of the ttsadapt source tree (None for an installed wheel outside git)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    sha = out.stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout.strip()
    return sha + ("-dirty" if dirty else "")


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {"ttsadapt": __version__, "python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def resolve_device(requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        return "cpu"


def device_description(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(0)})"
    return f"cpu ({platform.processor() or platform.machine()}, {_cpu_count()} cores)"


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def provenance(device: str) -> dict[str, Any]:
    return {
        "git_sha": git_sha(),
        "packages": package_versions(),
        "device": device_description(device),
        "platform": platform.platform(),
        "host": platform.node(),
        "cpu_threads": _compute_threads(),
    }


def _compute_threads() -> int | None:
    """torch's intra-op thread count now: a run's audio depends on it at float level."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return int(torch.get_num_threads())
