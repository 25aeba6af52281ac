"""LoRA on the tiny VoxCPM2: 200 optimizer steps on this CPU, with the training loss falling.

The issue's number: ``lora`` (scope ``all``, rank 8, alpha 16) trained through the shared loop for
200 steps on one speaker's train split of the offline corpus (espeak-ng speech, 40 clips), the
tiny VoxCPM2 (``model = "tiny"``). Records wall and CPU seconds, steps/s, peak memory and the
first/last 20-step mean losses in ``benchmark.extra_info``; asserts the loss falls.

    .venv/bin/pytest benchmarks/perf/test_voxcpm2_lora_200.py --benchmark-enable -s

CPU seconds are the contention-free figure (wall time grows with other processes' load).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
from _bench_helpers import SilentBar

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")

from ttsadapt.components import RunContext, TrainingData

STEPS = 200
WINDOW = 20
HYPER = {
    "lr": 1e-3,
    "warmup_steps": 10,
    "max_steps": STEPS,
    "batch_size": 2,
    "grad_accum": 1,
    "log_every": 1,  # every step's loss goes to the curve (the assertion needs them)
    "val_every": STEPS,
    "save_every": STEPS,
}


@pytest.fixture(scope="module")
def train_split():
    from ttsadapt.data.corpus import build_corpus
    from ttsadapt.data.manifest import load_manifest

    manifest = build_corpus(
        {"builder": "offline", "n_train": 40, "n_validation": 5, "n_eval": 6}, progress=False
    )
    clips = load_manifest(manifest).clips
    speaker = sorted({c.speaker for c in clips})[0]
    train = [c for c in clips if c.speaker == speaker and c.split == "train"]
    val = [c for c in clips if c.speaker == speaker and c.split == "validation"]
    assert len(train) == 40
    return TrainingData(train=train, validation=val)


def test_lora_200_steps_tiny_voxcpm2(benchmark, train_split, tmp_path):
    from ttsadapt.plugins.backbones.voxcpm2 import VoxCPM2Backbone
    from ttsadapt.plugins.methods.lora import Lora

    backbone = VoxCPM2Backbone(model="tiny")
    backbone.load("cpu")
    method = Lora(scope="all", rank=8, **HYPER)
    ctx = RunContext(Path(tmp_path), 0, "cpu", logging.getLogger("perf"), SilentBar)
    timing: dict[str, float] = {}

    def run():
        wall, cpu = time.perf_counter(), time.process_time()
        result = method.adapt(backbone, train_split, ctx)
        timing.update(wall_s=time.perf_counter() - wall, cpu_s=time.process_time() - cpu)
        return result

    result = benchmark.pedantic(run, rounds=1, iterations=1)
    losses = [r["train_loss"] for r in result.curves if "train_loss" in r]
    assert len(losses) == STEPS
    first = sum(losses[:WINDOW]) / WINDOW
    last = sum(losses[-WINDOW:]) / WINDOW
    train_s = result.stats["train_s"]
    benchmark.extra_info.update(
        steps=STEPS,
        batch_size=HYPER["batch_size"],
        wall_s=round(timing["wall_s"], 1),
        cpu_s=round(timing["cpu_s"], 1),
        train_s=train_s,
        steps_per_s=round(STEPS / train_s, 3),
        prepare_s=result.stats["prepare_s"],
        peak_memory_mb=round(result.stats["peak_memory_mb"], 1),
        trainable_params=result.trainable_params,
        total_params=result.total_params,
        loss_first20=round(first, 4),
        loss_last20=round(last, 4),
        val_loss=result.checkpoints[-1].val_loss if result.checkpoints else None,
    )
    print(f"\n{benchmark.extra_info}")
    assert last < first, f"training loss did not fall: first 20 {first:.4f}, last 20 {last:.4f}"
