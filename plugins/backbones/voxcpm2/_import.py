"""Import ``voxcpm`` (VoxCPM2 model classes) in an environment without torchaudio.

``voxcpm`` 2.x is installed with ``pip install --no-deps voxcpm``. Its package ``__init__`` imports
``voxcpm.core`` → ``voxcpm.model`` → ``voxcpm/model/voxcpm.py`` (the v1 model), which does
``import torchaudio`` at module level. VoxCPM2 itself (``voxcpm/model/voxcpm2.py``) never touches
torchaudio, and PyPI's torchaudio wheels are CUDA-linked and fail to import beside a CPU torch.

How the import is made to work, without editing installed files:

1. If ``torchaudio`` imports for real, nothing special happens.
2. Otherwise a stand-in module named ``torchaudio`` is put into ``sys.modules`` *only for the
   duration of* ``import voxcpm`` and removed right after (unless something replaced it). The
   stand-in raises an ``ImportError`` that explains itself on any attribute use, so only v1's
   ``torchaudio.load`` paths (VoxCPM 1.x prompt loading, the ZipEnhancer denoiser) would fail —
   loudly — and no other code in the process ever sees a fake torchaudio.

``voxcpm``'s declared dependencies that the VoxCPM2 classes really need: torch, einops, pydantic,
tqdm, transformers (tokenizer class), librosa (imported by ``voxcpm2.py``), numpy,
huggingface_hub (imported by ``voxcpm.core``) and safetensors. Not needed: torchaudio, torchcodec,
gradio, funasr, modelscope, spaces, datasets/argbind (``voxcpm.training`` only), wetext, inflect,
simplejson, addict, sortedcontainers, matplotlib.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from typing import Any

_SHIM_NAME = "torchaudio"
_THIRD_PARTY = (
    "torch",
    "numpy",
    "einops",
    "pydantic",
    "tqdm",
    "librosa",
    "transformers",
    "huggingface_hub",
    "safetensors.torch",
)


class _MissingTorchaudio(types.ModuleType):
    """Stand-in for torchaudio while ``voxcpm`` is imported; any use raises a clear error."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError(
            f"torchaudio.{name} is unavailable: ttsadapt imported voxcpm without torchaudio "
            "(only VoxCPM2 is supported here; VoxCPM 1.x prompt loading and the ZipEnhancer "
            "denoiser need a working torchaudio)"
        )


def _torchaudio_works() -> bool:
    if _SHIM_NAME in sys.modules and not isinstance(sys.modules[_SHIM_NAME], _MissingTorchaudio):
        return True
    try:
        importlib.import_module(_SHIM_NAME)
    except Exception:  # noqa: BLE001 - missing, or a CUDA-linked wheel that fails to load
        sys.modules.pop(_SHIM_NAME, None)
        return False
    return True


@contextlib.contextmanager
def _torchaudio_shim() -> Iterator[None]:
    shim = _MissingTorchaudio(_SHIM_NAME)
    sys.modules[_SHIM_NAME] = shim
    try:
        yield
    finally:
        if sys.modules.get(_SHIM_NAME) is shim:
            del sys.modules[_SHIM_NAME]


def import_voxcpm2() -> types.ModuleType:
    """Return ``voxcpm.model.voxcpm2`` (``VoxCPM2Model``, ``VoxCPMConfig``, ``LoRAConfig``, ...)."""
    name = "voxcpm.model.voxcpm2"
    if name in sys.modules:
        return sys.modules[name]
    if importlib.util.find_spec("voxcpm") is None:
        from ttsadapt.errors import ConfigError

        raise ConfigError(
            "the voxcpm2 backbone needs the `voxcpm` package, installed without its heavy "
            "dependencies: pip install --no-deps voxcpm==2.0.3 (./run.sh does this)"
        )
    try:
        importlib.import_module("einops")
    except ImportError as exc:
        raise ImportError(
            "the VoxCPM2 backbone needs `einops` (a dependency of voxcpm): pip install einops"
        ) from exc
    if _torchaudio_works():
        return _quiet(importlib.import_module(name))
    # Import every third-party module voxcpm needs *before* the stand-in exists, so that only
    # voxcpm's own modules run while it is in sys.modules (transformers, for one, probes
    # ``importlib.util.find_spec("torchaudio")`` when it is first imported).
    for dep in _THIRD_PARTY:
        importlib.import_module(dep)
    from transformers import LlamaTokenizerFast  # noqa: F401 - resolves the lazy module now

    with _torchaudio_shim():
        return _quiet(importlib.import_module(name))


def _quiet(module: types.ModuleType) -> types.ModuleType:
    """voxcpm draws a bar of its own for every generated utterance; the runner already shows a
    synthesis bar, so voxcpm's per-step bar is switched off (its module attribute, not its file)."""
    import functools

    from tqdm import tqdm

    module.tqdm = functools.partial(tqdm, disable=True)
    return module


def import_lora_layer() -> types.ModuleType:
    """Return ``voxcpm.modules.layers.lora`` (voxcpm's own ``LoRALinear``)."""
    import_voxcpm2()
    return importlib.import_module("voxcpm.modules.layers.lora")
