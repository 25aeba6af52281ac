"""Fixtures for the training tests: a tiny NeuTTS (Qwen2) backbone and learnable text + codes data."""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ttsadapt.components import RunContext, TrainingData
from ttsadapt.types import Clip

CODEBOOK = 256
SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
]


def codes_for(text: str) -> list[int]:
    """Codes that follow from the words (3 per word), so a model can learn text -> codes."""
    codes = []
    for word in text.lower().split():
        h = zlib.crc32(word.encode())
        codes += [h % CODEBOOK, (h >> 8) % CODEBOOK, (h >> 16) % CODEBOOK]
    return codes


def make_clip(i: int, text: str, split: str = "train") -> Clip:
    return Clip(
        id=f"{split}{i:03d}",
        audio=Path(f"/nonexistent/{split}{i:03d}.wav"),
        text=text,
        speaker="spk1",
        language="en",
        split=split,
        extra={"codes": codes_for(text)},
    )


@pytest.fixture
def data() -> TrainingData:
    train = [make_clip(i, s) for i, s in enumerate(SENTENCES[:10])]
    val = [make_clip(i, s, "val") for i, s in enumerate(SENTENCES[10:])]
    return TrainingData(train=train, validation=val)


class _Bar:
    def __init__(self, total=None, desc=None):
        self.n = 0
        self.postfix = None

    def update(self, n=1):
        self.n += n

    def set_postfix(self, postfix, refresh=True):
        self.postfix = postfix

    def close(self):
        pass


def make_ctx(run_dir: Path, seed: int = 0, dev_score=None) -> RunContext:
    return RunContext(
        run_dir=Path(run_dir),
        seed=seed,
        device="cpu",
        logger=logging.getLogger("ttsadapt.test"),
        progress=_Bar,
        dev_score=dev_score,
        dev_metric="dev" if dev_score else None,
    )


def tiny_neutts(**overrides):
    from ttsadapt.plugins.backbones.neutts import NeuTTS

    params = {"model": "tiny", "codec": "none", "codebook_size": CODEBOOK, "tiny_hidden": 64}
    params.update(overrides)
    backbone = NeuTTS(**params)
    backbone.load("cpu")
    return backbone


TINY_TRAIN = {
    "lr": 3e-3,
    "warmup_steps": 2,
    "max_steps": 12,
    "batch_size": 4,
    "grad_accum": 1,
    "val_every": 4,
    "save_every": 4,
    "log_every": 1,
}
