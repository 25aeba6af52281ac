"""The methods on the tiny VoxCPM2 backbone (real espeak-ng speech as training audio)."""

from __future__ import annotations

import subprocess

import pytest
from conftest import SENTENCES, make_ctx

from ttsadapt.components import TrainingData
from ttsadapt.types import Clip

pytestmark = pytest.mark.slow


@pytest.fixture
def speech(tmp_path) -> TrainingData:
    clips = []
    for i, text in enumerate(SENTENCES[:5]):
        wav = tmp_path / f"{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
        clips.append(Clip(id=str(i), audio=wav, text=text, speaker="s", language="en"))
    return TrainingData(train=clips[:4], validation=clips[4:])


@pytest.mark.parametrize("method", ["lora", "full_ft"])
def test_method_trains_tiny_voxcpm2(tmp_path, speech, method):
    from ttsadapt.plugins.backbones.voxcpm2 import VoxCPM2Backbone
    from ttsadapt.plugins.methods.full_ft import FullFt
    from ttsadapt.plugins.methods.lora import Lora

    backbone = VoxCPM2Backbone(model="tiny")
    backbone.load("cpu")
    cfg = dict(lr=1e-3, warmup_steps=1, max_steps=2, batch_size=2, grad_accum=1, save_every=2)
    cls, extra = (Lora, {"scope": "all", "rank": 4}) if method == "lora" else (FullFt, {})
    result = cls(**cfg, **extra).adapt(backbone, speech, make_ctx(tmp_path))
    assert result.selected["used"] == 2
    assert {"train_loss", "train_loss_diff", "train_loss_stop"} <= set(result.curves[0])
    frozen = [n for n, p in backbone.module.named_parameters() if n.startswith("audio_vae")]
    assert all(not p.requires_grad for n, p in backbone.module.named_parameters() if n in frozen)
    if method == "lora":
        assert 0 < result.trainable_params < result.total_params
        assert (tmp_path / "adapter" / "upstream" / "lora_weights.safetensors").is_file()
    else:
        prefixes = tuple(p + "." for p in backbone.frozen_modules())
        frozen_count = sum(
            p.numel() for n, p in backbone.module.named_parameters() if n.startswith(prefixes)
        )
        assert result.trainable_params == result.total_params - frozen_count  # VAE stays frozen
        assert (tmp_path / "adapter" / "trainable.safetensors").is_file()
