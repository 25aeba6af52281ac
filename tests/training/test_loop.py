"""The shared loop on the tiny NeuTTS backbone: loss falls, curves, selection, resume, NaN."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_TRAIN, make_ctx, tiny_neutts

from ttsadapt.errors import ConfigError
from ttsadapt.plugins.methods.lora import Lora
from ttsadapt.training import TrainingDivergedError
from ttsadapt.training.config import TrainingParams
from ttsadapt.training.optim import lr_factor


def _lora_weights(backbone):
    return {n: p.detach().clone() for n, p in backbone.module.named_parameters() if "lora_" in n}


def test_lora_training_lowers_loss_and_writes_curves(tmp_path, data):
    backbone = tiny_neutts()
    params = dict(TINY_TRAIN, lr=2e-2, max_steps=30, val_every=10, save_every=10)
    result = Lora(scope="lm", rank=8, **params).adapt(backbone, data, make_ctx(tmp_path))

    train = [r["train_loss"] for r in result.curves if "train_loss" in r]
    assert len(train) == 30
    assert sum(train[-5:]) / 5 < sum(train[:5]) / 5 - 0.1  # the loss falls
    val = [r["val_loss"] for r in result.curves if "val_loss" in r]
    assert len(val) == 3
    rows = [json.loads(line) for line in (tmp_path / "curves.jsonl").read_text().splitlines()]
    assert rows == result.curves
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert [c.step for c in result.checkpoints] == [10, 20, 30]
    index = json.loads((tmp_path / "checkpoints.json").read_text())
    assert index["selected"]["by_val_loss"] == result.selected["by_val_loss"]
    assert result.stats["steps_per_s"] > 0 and result.stats["peak_memory_mb"] > 0
    assert 0 < result.trainable_params < result.total_params
    assert result.adapter_bytes > 0
    assert (tmp_path / "adapter" / "upstream" / "adapter_model.safetensors").is_file()


def test_selection_by_dev_metric_differs_and_is_loaded(tmp_path, data):
    backbone = tiny_neutts()
    calls = []

    def dev_score(bb):  # a dev metric that prefers the first checkpoint
        calls.append(1)
        return -float(len(calls))

    ctx = make_ctx(tmp_path, dev_score=dev_score)
    result = Lora(scope="lm", rank=4, select="dev_metric", **TINY_TRAIN).adapt(backbone, data, ctx)
    assert len(calls) == 3
    assert result.selected["by_dev_metric"] == 4
    assert result.selected["by_val_loss"] == 12  # validation loss still falls
    assert result.selected["used"] == 4
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "checkpoints" / "step-000004" / "trainable.safetensors"))
    for name, p in backbone.module.named_parameters():
        if name in saved:
            assert torch.equal(p.detach(), saved[name])


def test_dev_metric_selection_without_dev_scorer_is_a_config_error(tmp_path, data):
    with pytest.raises(ConfigError, match="select = 'dev_metric'"):
        Lora(scope="lm", rank=4, select="dev_metric", **TINY_TRAIN).adapt(
            tiny_neutts(), data, make_ctx(tmp_path)
        )


class _Killed(Exception):
    pass


def test_resume_after_kill_reaches_the_same_weights(tmp_path, data):
    straight = tiny_neutts()
    Lora(scope="lm", rank=4, **TINY_TRAIN).adapt(straight, data, make_ctx(tmp_path / "a"))

    ctx = make_ctx(tmp_path / "b")

    class KillingBar:
        def __init__(self, total=None, desc=None):
            self.n = 0

        def update(self, n=1):
            self.n += n
            if self.n == 6:
                raise _Killed()

        def close(self):
            pass

    ctx.progress = KillingBar
    with pytest.raises(_Killed):
        Lora(scope="lm", rank=4, **TINY_TRAIN).adapt(tiny_neutts(), data, ctx)
    assert (tmp_path / "b" / "checkpoints" / "step-000004").is_dir()

    resumed = tiny_neutts()
    result = Lora(scope="lm", rank=4, **TINY_TRAIN).adapt(resumed, data, make_ctx(tmp_path / "b"))
    assert result.stats["resumed_from_step"] == 4
    assert result.stats["steps"] == 8
    steps = [r["step"] for r in result.curves if "train_loss" in r]
    assert steps == list(range(1, 13))  # no duplicated rows from the killed attempt
    a, b = _lora_weights(straight), _lora_weights(resumed)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_same_seed_same_result_other_seed_differs(tmp_path, data):
    runs = []
    for i, seed in enumerate((3, 3, 4)):
        bb = tiny_neutts()
        params = dict(TINY_TRAIN, max_steps=3, save_every=3, val_every=3)
        Lora(scope="lm", rank=4, **params).adapt(bb, data, make_ctx(tmp_path / str(i), seed=seed))
        runs.append(_lora_weights(bb))
    name = next(iter(runs[0]))
    assert torch.equal(runs[0][name], runs[1][name])
    assert not torch.equal(runs[0][name], runs[2][name])


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path, data):
    backbone = tiny_neutts()
    original = backbone.loss
    count = {"n": 0}

    def loss(batch):
        count["n"] += 1
        parts = original(batch)
        if count["n"] > 7:  # train steps 1-6, plus 1 validation batch at step 4
            parts["loss"] = parts["loss"] * float("nan")
        return parts

    backbone.loss = loss
    with pytest.raises(TrainingDivergedError) as err:
        Lora(scope="lm", rank=4, **TINY_TRAIN).adapt(backbone, data, make_ctx(tmp_path))
    message = str(err.value)
    assert "not finite at step 7" in message
    assert "last good checkpoint is step 4" in message
    assert "Lower lr" in message
    assert (tmp_path / "checkpoints" / "step-000004" / "trainable.safetensors").is_file()
    for name, p in backbone.module.named_parameters():
        if "lora_" in name:
            assert torch.isfinite(p).all()


def test_warmup_then_cosine_schedule():
    cfg = TrainingParams(lr=1e-4, warmup_steps=200, max_steps=10_000)
    assert lr_factor(0, cfg) == pytest.approx(1 / 200)
    assert lr_factor(199, cfg) == pytest.approx(1.0)
    assert lr_factor(200 + 4900, cfg) == pytest.approx(0.5, abs=1e-3)
    assert lr_factor(9_999, cfg) < 1e-6 + 1e-3
    with pytest.raises(ValueError):
        TrainingParams(clip_grad_norm=0)


def test_defaults_follow_the_voxcpm2_recipe():
    cfg = TrainingParams()
    assert (cfg.lr, cfg.warmup_steps, cfg.max_steps) == (1e-4, 200, 10_000)
    assert (cfg.batch_size, cfg.grad_accum, cfg.clip_grad_norm) == (4, 4, 1.0)
    assert (cfg.weight_decay, cfg.adam_beta1, cfg.adam_beta2) == (0.01, 0.9, 0.999)
    assert cfg.scheduler == "cosine" and cfg.val_every == 500
