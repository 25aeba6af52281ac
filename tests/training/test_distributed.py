"""The multi-process training path: 2 CPU processes (gloo, DDP through Accelerate) against one.

Two processes with ``grad_accum = 1`` see the same global batches as one process with
``grad_accum = 2`` (process p takes micro-batches p, 2 + p, …), so the first step's loss is the
same number and the loss curves agree up to float summation order. Only the main process writes
curves and checkpoints; the other reads the main's checkpoints when it selects one.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

STEPS = 10
COMMON = {
    "lr": 5e-3,
    "warmup_steps": 2,
    "max_steps": STEPS,
    "batch_size": 2,
    "val_every": 5,
    "save_every": 5,
    "log_every": 1,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(run_dir: Path, out: Path, grad_accum: int) -> None:
    """One process's training: tiny NeuTTS + LoRA on the shared fixture data; curves to ``out``."""
    torch.set_num_threads(1)  # the same kernels (and summation order) in every process
    from conftest import SENTENCES, make_clip, make_ctx, tiny_neutts

    from ttsadapt.components import TrainingData
    from ttsadapt.plugins.methods.lora import Lora

    data = TrainingData(
        [make_clip(i, s) for i, s in enumerate(SENTENCES[:8])],
        [make_clip(i, s, "val") for i, s in enumerate(SENTENCES[10:])],
    )
    backbone = tiny_neutts()
    result = Lora(scope="lm", rank=4, grad_accum=grad_accum, **COMMON).adapt(
        backbone, data, make_ctx(run_dir)
    )
    weights = {
        n: p.detach().double().sum().item()
        for n, p in backbone.module.named_parameters()
        if "lora_" in n
    }
    out.write_text(
        json.dumps({"curves": result.curves, "selected": result.selected, "weights": weights})
    )


def _rank(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        ACCELERATE_USE_CPU="true",
    )
    root_p = Path(root)
    # rank 0 trains into the run folder; the other rank gets a scratch folder, as the record
    # store of a non-zero rank gives it (see ttsadapt.store)
    run_dir = root_p / "run" if rank == 0 else root_p / f"scratch-rank{rank}" / "run"
    _train(run_dir, root_p / f"rank{rank}.json", grad_accum=1)


def _single(root: str) -> None:
    _train(Path(root) / "single", Path(root) / "single.json", grad_accum=2)


@pytest.mark.slow
def test_two_processes_match_one_process_on_the_same_global_batches(tmp_path):
    ctx = mp.get_context("spawn")
    one = ctx.Process(target=_single, args=(str(tmp_path),))
    one.start()
    one.join(600)
    assert one.exitcode == 0
    mp.start_processes(
        _rank_entry, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="spawn"
    )
    single = json.loads((tmp_path / "single.json").read_text())
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]

    def train_losses(res):
        return [r["train_loss"] for r in res["curves"] if "train_loss" in r]

    def val_losses(res):
        return [r["val_loss"] for r in res["curves"] if "val_loss" in r]

    one_curve, ddp_curve = train_losses(single), train_losses(ranks[0])
    assert len(one_curve) == len(ddp_curve) == STEPS
    # the same weights on the same global batch: the same first loss, exactly
    assert ddp_curve[0] == one_curve[0]
    # the same curve (up to float summation order), so the same shape: it falls, and the steps
    # go up and down together
    assert ddp_curve == pytest.approx(one_curve, rel=1e-4)
    assert ddp_curve[-1] < ddp_curve[0]
    assert [b < a for a, b in itertools.pairwise(one_curve)] == [
        b < a for a, b in itertools.pairwise(ddp_curve)
    ]
    assert val_losses(ranks[0]) == pytest.approx(val_losses(single), rel=1e-4)
    # both processes hold the same weights after training (DDP kept them in step), close to the
    # single process's
    assert ranks[1]["weights"] == ranks[0]["weights"]
    assert ranks[0]["weights"] == pytest.approx(single["weights"], rel=1e-3, abs=1e-5)
    assert ranks[1]["selected"] == ranks[0]["selected"]
    # only the main process wrote curves and checkpoints
    run, scratch = tmp_path / "run", tmp_path / "scratch-rank1" / "run"
    assert (run / "curves.jsonl").is_file() and (run / "checkpoints.json").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-000005",
        "step-000010",
    ]
    assert not (scratch / "curves.jsonl").exists()
    assert not (scratch / "checkpoints").exists()
    assert not (scratch / "checkpoints.json").exists()
    rows = [json.loads(line) for line in (run / "curves.jsonl").read_text().splitlines()]
    assert rows == ranks[0]["curves"]


def _rank_entry(rank: int, world: int, port: int, root: str) -> None:
    _rank(rank, world, port, root)
