"""The embedded reference model: ships in the package, loads offline, speaks, and never saw the
quick suite's target speakers or evaluation sentences."""

import json
import tomllib
from pathlib import Path

import numpy as np

from ttsadapt.plugins.backbones.voxcpm2 import VoxCPM2Backbone
from ttsadapt.plugins.backbones.voxcpm2.reference import REFERENCE_DIR
from ttsadapt.types import SynthesisRequest

REPO = Path(__file__).resolve().parents[1]


def test_reference_model_loads_and_speaks():
    backbone = VoxCPM2Backbone(model="reference", max_len=40)
    backbone.load("cpu")
    total, _ = backbone.parameter_counts()
    assert 2_000_000 < total < 5_000_000
    (audio,) = backbone.synthesize([SynthesisRequest("a", "good morning", "en", "x")])
    assert audio.dtype == np.float32 and audio.size > 0 and np.isfinite(audio).all()
    assert np.abs(audio).max() > 1e-3


def test_quick_suite_targets_were_held_out_of_pretraining():
    meta = json.loads((REFERENCE_DIR / "ttsadapt_reference.json").read_text())
    quick = tomllib.loads((REPO / "benchmarks" / "quick.toml").read_text())
    targets = {s for recipe in quick["data"] for s in recipe.get("speakers", [])}
    assert targets <= set(meta["held_out_speakers"])
    assert set(quick["evaluation"]["speakers"]) <= set(meta["held_out_speakers"])
