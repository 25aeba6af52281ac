"""Batched sampling of K = 12 rollouts of one prompt against 12 sequential generations (NeuTTS).

GRPO samples K candidates per prompt; the backbone's ``generate_codes`` takes them in one call
(left-padded prompts, one ``generate``). Ours vs the plain baseline in the same run, as a ratio:

    .venv/bin/pytest benchmarks/perf/test_batched_rollout.py --benchmark-enable -s -p no:cacheprovider
"""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")

from ttsadapt.plugins.backbones.neutts import NeuTTS  # noqa: E402
from ttsadapt.types import SynthesisRequest  # noqa: E402

K = 12
SETTINGS = {"min_new_tokens": 60, "max_length": 200, "temperature": 1.0, "top_k": 50}


@pytest.fixture(scope="module")
def backbone():
    torch.set_num_threads(1)
    bb = NeuTTS(model="tiny", codec="none", codebook_size=256, tiny_hidden=64)
    bb.load("cpu")
    return bb


def _requests():
    return [
        SynthesisRequest(id=f"k{i}", text="A quiet morning by the sea.", language="en", speaker="s")
        for i in range(K)
    ]


def test_batched_k12_rollout_vs_sequential(backbone, benchmark):
    reqs = _requests()
    backbone.generate_codes(reqs[:1], SETTINGS)  # warm up
    t0 = time.process_time()
    for r in reqs:
        backbone.generate_codes([r], SETTINGS)
    sequential = time.process_time() - t0
    t0 = time.process_time()
    out = benchmark.pedantic(backbone.generate_codes, args=(reqs, SETTINGS), rounds=1, iterations=1)
    batched = time.process_time() - t0
    assert len(out) == K and all(out)
    ratio = sequential / batched
    print(f"\nK={K}: sequential {sequential:.2f} CPU-s, batched {batched:.2f} CPU-s, {ratio:.1f}x")
    assert ratio >= 3.0
