"""int8 inference of a backbone's LM: PyTorch dynamic quantisation on a copy, never in place.

``torch.ao.quantization.quantize_dynamic`` swaps each ``nn.Linear`` of the chosen submodules for
a dynamically quantised one: int8 weights (per-tensor scale), activations quantised per batch at
run time, matmuls in int8 with fbgemm/qnnpack. It runs on CPU only. A LoRA adapter injected by
PEFT is merged into its base layer on the copy first (a quantised layer has no ``weight`` tensor
for PEFT's forward to read), so the copy is what one would deploy: the adapted weights, in int8.
The copy is cached against the parameters' identities and in-place version counters, so it is
rebuilt only after the live model changed (a training step, a loaded adapter).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

from ttsadapt.errors import ConfigError


def require_cpu(backbone: str, device: str) -> None:
    if not str(device).startswith("cpu"):
        raise ConfigError(
            f"backbone {backbone}: synthesis setting int8 = true uses PyTorch dynamic "
            f"quantisation, which runs on CPU only; the run's device is {device!r} (set the "
            "suite's device = 'cpu' for int8 settings)"
        )


def _params_key(module: Any) -> tuple:
    return tuple((id(p), p._version) for p in module.parameters())


def merge_lora_(module: Any) -> int:
    """Merge every PEFT LoRA layer of ``module`` into its base layer and put the base layer in its
    place (in place); returns how many layers were merged."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # pragma: no cover - peft is a core dependency
        return 0
    merged = 0
    for name, child in list(module.named_modules()):
        if isinstance(child, LoraLayer) and name:
            child.merge()
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, attr, child.get_base_layer())
            merged += 1
    return merged


def quantized_copy(module: Any, submodules: Sequence[str]) -> Any:
    """A CPU copy of ``module`` with LoRA merged and the ``nn.Linear`` layers of ``submodules``
    (dotted names; ``""`` = the whole module) dynamically quantised to int8."""
    import torch

    clone = copy.deepcopy(module).to("cpu").eval()
    merge_lora_(clone)
    for name in submodules:
        target = clone.get_submodule(name) if name else clone
        with warnings.catch_warnings():  # torch >= 2.9 announces the API's move to torchao
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            quantized = torch.ao.quantization.quantize_dynamic(
                target, {torch.nn.Linear}, dtype=torch.qint8, inplace=False
            )
        if not name:
            clone = quantized
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = clone.get_submodule(parent_name) if parent_name else clone
        setattr(parent, attr, quantized)
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


class Int8Cache:
    """The int8 copy of one live module, rebuilt when the module's parameters changed."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._copy: Any = None

    def get(self, module: Any, submodules: Sequence[str]) -> Any:
        key = (id(module), tuple(submodules), _params_key(module))
        if self._key != key:
            self._copy = None  # free the old copy before building the new one
            self._copy = quantized_copy(module, submodules)
            self._key = key
        return self._copy
