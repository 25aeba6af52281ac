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
    with pytest.raises(CheckpointError, match=r"incomplete.*missing trainable\.safetensors"):
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


# --------------------------------------------------------------------------- nothing runs code


def test_training_state_is_plain_data_and_loads_with_weights_only(trained):
    import torch

    state_file = trained / "checkpoints" / "step-000012" / ckpt.STATE_FILE
    raw = torch.load(state_file, map_location="cpu", weights_only=True)  # would raise otherwise
    assert raw["format"] == ckpt.STATE_FORMAT and raw["step"] == 12
    assert isinstance(raw["rng"]["python"]["state"], list)
    assert raw["rng"]["numpy"]["key"].dtype == torch.int64
    assert raw["optimizer"]["state"] and raw["scheduler"]["last_epoch"] == 12


def test_rng_state_survives_the_round_trip_exactly():
    import random

    import numpy as np
    import torch

    from ttsadapt.training.seeding import rng_state, seed_everything, set_rng_state

    seed_everything(7)
    random.gauss(0, 1)  # a cached Gaussian in Python's generator
    np.random.standard_normal()  # and in NumPy's
    saved = rng_state()
    expected = (random.random(), random.gauss(0, 1), np.random.rand(3), torch.rand(3))
    seed_everything(99)
    set_rng_state(ckpt.decode_rng(ckpt.encode_rng(saved)))
    got = (random.random(), random.gauss(0, 1), np.random.rand(3), torch.rand(3))
    assert got[:2] == expected[:2]
    assert np.array_equal(got[2], expected[2]) and torch.equal(got[3], expected[3])


def test_resume_continues_bit_for_bit(trained, data):
    """Resuming from step 8 writes a step-12 checkpoint identical to the uninterrupted run's:
    weights, optimizer moments, scheduler and every RNG state."""
    import shutil

    import torch

    root = trained / "checkpoints"
    straight_weights = (root / "step-000012" / ckpt.WEIGHTS_FILE).read_bytes()
    straight = torch.load(root / "step-000012" / ckpt.STATE_FILE, weights_only=True)
    shutil.rmtree(root / "step-000012")
    result = Lora(scope="lm", rank=4, **TINY_TRAIN).adapt(tiny_neutts(), data, make_ctx(trained))
    assert result.stats["resumed_from_step"] == 8
    assert (root / "step-000012" / ckpt.WEIGHTS_FILE).read_bytes() == straight_weights
    resumed = torch.load(root / "step-000012" / ckpt.STATE_FILE, weights_only=True)

    def same(a, b, where="state"):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), where
        elif isinstance(a, dict):
            assert a.keys() == b.keys(), where
            for k in a:
                same(a[k], b[k], f"{where}[{k!r}]")
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b)):
                same(x, y, f"{where}[{i}]")
        else:
            assert a == b, where

    same(straight, resumed)


class _RunsCode:
    """Unpickling this calls ``Path.touch(marker)``: stands in for any code a pickle can run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.marker),))


def test_a_planted_pickle_is_refused_and_runs_nothing(trained, data, tmp_path):
    import pickle

    import torch

    folder = trained / "checkpoints" / "step-000012"
    marker = tmp_path / "code-ran"
    good = torch.load(folder / ckpt.STATE_FILE, weights_only=True)
    torch.save({**good, "optimizer": _RunsCode(marker)}, folder / ckpt.STATE_FILE)
    pickle.loads(pickle.dumps(_RunsCode(tmp_path / "probe")))  # a full unpickle runs it
    assert (tmp_path / "probe").exists()
    backbone = tiny_neutts()
    apply_lora(backbone, "lm", 4)
    with pytest.raises(CheckpointError, match="refusing to load") as err:
        ckpt.load_checkpoint(folder, backbone.module)
    assert str(folder / ckpt.STATE_FILE) in str(err.value)
    assert "could run code" in str(err.value)
    assert not marker.exists()
    # resuming the run refuses too, naming the file, instead of training on
    with pytest.raises(CheckpointError, match="refusing to load") as err:
        Lora(scope="lm", rank=4, **TINY_TRAIN).adapt(tiny_neutts(), data, make_ctx(trained))
    assert str(folder / ckpt.STATE_FILE) in str(err.value)
    assert not marker.exists()


def test_state_written_by_a_full_pickle_is_refused(trained):
    """A state file in the old format (NumPy arrays, pickled with weights_only=False) names the
    file and what to do; it is never loaded in full."""
    import numpy as np
    import torch

    folder = trained / "checkpoints" / "step-000012"
    torch.save({"step": 12, "rng": {"numpy": np.random.get_state()}}, folder / ckpt.STATE_FILE)
    backbone = tiny_neutts()
    apply_lora(backbone, "lm", 4)
    with pytest.raises(CheckpointError, match=r"refusing to load .*training_state\.pt") as err:
        ckpt.load_checkpoint(folder, backbone.module)
    assert "Delete the checkpoint folder" in str(err.value)


def test_saving_something_that_is_not_plain_data_is_refused(tmp_path):
    import torch

    module = torch.nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match=r"training_state\['extra'\] is a .*_RunsCode"):
        ckpt.save_checkpoint(tmp_path, 1, module, {"step": 1, "extra": _RunsCode("x")}, {})
    assert not list(tmp_path.iterdir())  # nothing half-written
