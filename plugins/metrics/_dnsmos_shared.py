"""Exact DNSMOS P.835 scores of overlapping windows without recomputing the overlap.

The P.835 model (``sig_bak_ovr.onnx``) is a frame-local log-power STFT front end (20 ms frames,
10 ms hop), four 3x3 'same' convolutions at full time-frequency resolution (about 95 % of its
arithmetic), then pooling, three smaller convolutions, a global max and dense layers. Windows sit
1 s (100 frames) apart and overlap by 8 s, so running every window through the whole model
repeats most of the work: a 7 s clip (tiled to 14 s) gives 5 windows = 4500 frames for 1300
distinct ones.

This module cuts the shipped model (with ``onnx``, in memory, at load time) into three parts:

- ``front``: samples -> log-power spectrogram of one window, shape (N, 1, 900, 161);
- ``trunk``: spectrogram -> the fourth convolution after 2x2 max pooling, any number of frames;
- ``head``: trunk output of one window (N, 32, 450, 80) -> the three raw scores.

For a clip's n windows, the spectrogram of all distinct frames is stitched from the windows'
spectrograms (each frame is computed from the same samples either way), the trunk runs once over
it, and each window's trunk output is a slice of that. The slice is exact except at the window's
own edges: a window zero-pads its first and last frame, and after four 3x3 layers that padding
reaches 4 frames in. Those 4 frames at each interior window edge are recomputed from an 8-frame
strip of the window's spectrogram with the same zero padding, which makes every window's trunk
output identical to the full model's up to float rounding. The head then runs per window as
before. Mathematically the same function; measured within 1e-5 of the unsplit model.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ._common import ort_options

FRAMES = 900  # frames per 9.01 s window
HOP_FRAMES = 100  # window hop (1 s) in frames
EDGE = 4  # frames at a window edge that see the window's zero padding (4 stacked 3x3 convs)
STRIP = 2 * EDGE  # frames of spectrogram that determine the EDGE edge outputs exactly
TRUNK_CHUNK = 1300  # frames per trunk call (5 windows; bounds memory at ~80 kB a frame a layer)

_SPEC = "adjusted_input6"  # (N, 1, T, 161) log-power spectrogram, input of the first conv
# (N, 32, T/2, 80): the fourth convolution after the first 2x2 max pooling (stride 2). Windows
# start at even frames, so pooling a slice equals slicing the pooled clip.
_TRUNK_OUT = "mos_estimator_logpow/conv2d_3/Relu:0_pooling0"
POOL = 2


def available() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=2)
def split_sessions(model_path: str, intra_threads: int):
    """(front, trunk, head) onnxruntime sessions cut from the P.835 model at ``model_path``."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(model_path)
    names = {n for node in model.graph.node for n in node.output}
    if _SPEC not in names or _TRUNK_OUT not in names:
        raise ValueError(f"{model_path}: not the DNSMOS P.835 graph this module knows how to split")
    front = _subgraph(model, "input_1", ["N", 144160], _SPEC, ["N", 1, FRAMES, 161])
    trunk = _subgraph(model, _SPEC, ["N", 1, "T", 161], _TRUNK_OUT, ["N", 32, "T2", 80])
    head = _subgraph(model, _TRUNK_OUT, ["N", 32, FRAMES // POOL, 80], "Identity:0", ["N", 3])
    opts = ort_options(intra_threads)
    opts.enable_mem_pattern = False  # the trunk's input length changes from clip to clip

    def session(proto):
        return ort.InferenceSession(
            proto.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )

    return session(front), session(trunk), session(head)


def _subgraph(model, source: str, source_shape: list, target: str, target_shape: list):
    """The part of ``model`` that computes ``target`` from ``source`` (a new one-input model)."""
    from onnx import TensorProto, helper

    producer = {out: node for node in model.graph.node for out in node.output}
    initializers = {init.name: init for init in model.graph.initializer}
    needed, stack, used_inits = [], [target], {}
    seen = set()
    while stack:
        name = stack.pop()
        if name == source or name in seen:
            continue
        seen.add(name)
        if name in initializers:
            used_inits[name] = initializers[name]
            continue
        node = producer[name]
        if node not in needed:
            needed.append(node)
            stack.extend(node.input)
    order = {id(node): i for i, node in enumerate(model.graph.node)}
    nodes = sorted(needed, key=lambda node: order[id(node)])
    graph = helper.make_graph(
        nodes,
        f"{source}->{target}",
        [helper.make_tensor_value_info(source, TensorProto.FLOAT, source_shape)],
        [helper.make_tensor_value_info(target, TensorProto.FLOAT, target_shape)],
        list(used_inits.values()),
    )
    out = helper.make_model(graph, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    return out


class SharedP835:
    """Raw SIG/BAK/OVRL of a clip's consecutive windows with the overlap computed once."""

    def __init__(self, model_path: Path | str, intra_threads: int, batch_windows: int = 8):
        self.front, self.trunk, self.head = split_sessions(str(model_path), intra_threads)
        self.batch = max(1, batch_windows)

    def _trunk(self, spec: np.ndarray) -> np.ndarray:
        return self.trunk.run(None, {_SPEC: np.ascontiguousarray(spec)})[0]

    def clip(self, wins: np.ndarray) -> np.ndarray:
        """``wins``: (n, 144160) windows of one clip at a 1 s hop -> raw scores (n, 3)."""
        n = len(wins)
        specs = np.concatenate(
            [
                self.front.run(None, {"input_1": wins[s : s + self.batch]})[0]
                for s in range(0, n, self.batch)
            ]
        )  # (n, 1, 900, 161)
        # Distinct frames: all of window 0, then the last 100 frames of each later window.
        spec = np.concatenate([specs[:1], *[s[None, :, -HOP_FRAMES:] for s in specs[1:]]], axis=2)
        total = spec.shape[2]  # even: 900 + 100 (n - 1)
        full = np.empty((1, 32, total // POOL, 80), np.float32)
        for a in range(0, total, TRUNK_CHUNK):
            b = min(total, a + TRUNK_CHUNK)
            lo, hi = max(0, a - EDGE), min(total, b + EDGE)
            out = self._trunk(spec[:, :, lo:hi])
            full[:, :, a // POOL : b // POOL] = out[:, :, (a - lo) // POOL : (b - lo) // POOL]
        # Strips: the first STRIP frames of windows 1..n-1, then the last STRIP of windows 0..n-2.
        strips = [specs[k, :, :STRIP] for k in range(1, n)]
        strips += [specs[k, :, -STRIP:] for k in range(n - 1)]
        fixed = self._trunk(np.stack(strips)) if strips else None
        e, step, size = EDGE // POOL, HOP_FRAMES // POOL, FRAMES // POOL
        raw = []
        for s in range(0, n, self.batch):
            ks = range(s, min(n, s + self.batch))
            block = np.stack([full[0, :, k * step : k * step + size] for k in ks])
            for j, k in enumerate(ks):
                if k >= 1:
                    block[j, :, :e] = fixed[k - 1, :, :e]
                if k <= n - 2:
                    block[j, :, -e:] = fixed[n - 1 + k, :, -e:]
            raw.append(self.head.run(None, {_TRUNK_OUT: block})[0])
        return np.concatenate(raw)
