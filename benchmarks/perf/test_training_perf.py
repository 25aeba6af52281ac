"""Training-step overhead of the shared loop against a bare PyTorch loop.

Same tiny NeuTTS (Qwen2, 2 layers x 64) with the same LoRA, the same batches (4 clips, collated each
step) and the same AdamW + schedule + clipping; the shared loop adds Accelerate, loss bookkeeping,
NaN check, progress bar and curve rows. Single steps are interleaved (alternating which kind goes
first) and timed in CPU seconds of the one torch thread; the overhead is the median of each loop
step's ratio to the bare step beside it, which other processes on a shared CPU barely move
(medians of blocks or minima swung by +-5 % at load 8 on 2 cores).

    .venv/bin/pytest benchmarks/perf/test_training_perf.py --benchmark-enable -s
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from pathlib import Path

import pytest
import torch
from _bench_helpers import SilentBar

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ttsadapt.components import RunContext
from ttsadapt.training import Trainer, TrainingParams
from ttsadapt.training.adapters import apply_lora
from ttsadapt.training.optim import build_optimizer, build_scheduler
from ttsadapt.types import Clip

TEXTS = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
]
WARMUP = 10
ROUNDS = 150


def _backbone():
    from ttsadapt.plugins.backbones.neutts import NeuTTS

    backbone = NeuTTS(model="tiny", codec="none", codebook_size=256)
    backbone.load("cpu")
    apply_lora(backbone, "lm", rank=8)
    clips = [
        Clip(
            id=str(i),
            audio=Path("/nonexistent.wav"),
            text=t,
            speaker="s",
            language="en",
            extra={"codes": [(i * 37 + k * 11) % 256 for k in range(60)]},
        )
        for i, t in enumerate(TEXTS)
    ]
    return backbone, backbone.prepare(clips)


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: stable timings on a shared CPU
    torch.manual_seed(0)
    cfg = TrainingParams(
        lr=1e-4, warmup_steps=10, max_steps=100_000, batch_size=4, grad_accum=1, log_every=10
    )
    bare_bb, bare_examples = _backbone()
    params = [p for p in bare_bb.module.parameters() if p.requires_grad]
    opt = build_optimizer(params, cfg)
    sched = build_scheduler(opt, cfg)

    bare_bb.module.train()  # once, as a bare loop does

    def bare_step():
        loss = bare_bb.loss(bare_bb.collate(bare_examples))["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)

    loop_bb, loop_examples = _backbone()
    run_dir = tmp_path_factory.mktemp("perf")
    ctx = RunContext(run_dir, 0, "cpu", logging.getLogger("perf"), SilentBar)
    trainer = Trainer(loop_bb, loop_examples, [], cfg, ctx)
    bar = SilentBar()

    def loop_step():
        trainer.after_step(trainer.step(), bar)

    yield bare_step, loop_step
    torch.set_num_threads(threads)


def _cpu(fn) -> float:
    """CPU seconds of one step (this thread; torch runs on one thread here)."""
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def test_loop_overhead_under_5_percent(setups):
    bare_step, loop_step = setups
    for _ in range(WARMUP):
        bare_step()
        loop_step()
    bare, loop = [], []
    for r in range(ROUNDS):  # single steps, interleaved, alternating which goes first
        if r % 2:
            loop.append(_cpu(loop_step))
            bare.append(_cpu(bare_step))
        else:
            bare.append(_cpu(bare_step))
            loop.append(_cpu(loop_step))
    # each loop step against the bare step next to it in time: both saw the same contention
    paired = statistics.median(lo / b for lo, b in zip(loop, bare))
    bare_ms, loop_ms = statistics.median(bare) * 1e3, statistics.median(loop) * 1e3
    print(
        f"\nmedian CPU per step: bare {bare_ms:.2f} ms, shared loop {loop_ms:.2f} ms "
        f"({100 * (loop_ms / bare_ms - 1):+.1f} %); median paired overhead "
        f"{100 * (paired - 1):+.1f} %"
    )
    assert paired < 1.05


def test_bench_bare_step(benchmark, setups):
    benchmark(setups[0])


def test_bench_loop_step(benchmark, setups):
    benchmark(setups[1])
