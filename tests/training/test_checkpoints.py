"""Bad checkpoints: partial folders, interrupted saves, weights that do not fit the config."""

from __future__ import annotations

import logging

import pytest
from conftest import TINY_TRAIN, make_ctx, tiny_neutts

from ttsadapt.plugins.methods.lora import Lora
from ttsadapt.training import CheckpointError
from ttsadapt.training import checkpoint as ckpt
from ttsadapt.training.adapters import apply_lora


@pytest.fixture
def trained(tmp_path, data):
    Lora(scope="lm", rank=4, **TINY_TRAIN).adapt(tiny_neutts(), data, make_ctx(tmp_path))
    return tmp_path


def test_only_recent_checkpoints_keep_training_state(trained):
    root = trained / "checkpoints"
    assert not (root / "step-000004" / ckpt.STATE_FILE).exists()
    assert (root / "step-000008" / ckpt.STATE_FILE).exists()
    assert (root / "step-000012" / ckpt.STATE_FILE).exists()


def test_interrupted_save_and_broken_folder_are_skipped_on_resume(trained, caplog):
    root = trained / "checkpoints"
    (root / ".step-000016.partial").mkdir()  # killed mid-save
    (root / "step-000012" / ckpt.META_FILE).unlink()  # a partial copy
    with caplog.at_level(logging.WARNING):
        last = ckpt.last_resumable(root)
    assert last.step == 8
    assert "interrupted" in caplog.text and "missing meta.json" in caplog.text


def test_loading_an_incomplete_checkpoint_says_what_to_do(trained):
    folder = trained / "checkpoints" / "step-000012"
    (folder / ckpt.WEIGHTS_FILE).unlink()
    backbone = tiny_neutts()
    apply_lora(backbone, "lm", 4)
    with pytest.raises(CheckpointError, match="incomplete.*missing trainable.safetensors"):
        ckpt.load_checkpoint(folder, backbone.module)
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.load_checkpoint(trained / "checkpoints" / "step-999999", backbone.module)


def test_checkpoint_with_another_rank_names_the_tensor(trained):
    backbone = tiny_neutts()
    apply_lora(backbone, "lm", 8)
    with pytest.raises(CheckpointError, match=r"lora_A.*shape \(4, 64\).*expects \(8, 64\)"):
        ckpt.load_checkpoint(trained / "checkpoints" / "step-000008", backbone.module, False)


def test_checkpoint_of_another_method_does_not_fit(trained):
    backbone = tiny_neutts()
    for p in backbone.module.parameters():
        p.requires_grad_(True)
    with pytest.raises(CheckpointError, match="does not fit the model"):
        ckpt.load_checkpoint(trained / "checkpoints" / "step-000008", backbone.module, False)
