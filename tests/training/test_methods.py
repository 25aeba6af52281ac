"""The four methods on the tiny NeuTTS backbone, and their registration."""

from __future__ import annotations

import pytest
from conftest import TINY_TRAIN, make_ctx, tiny_neutts

from ttsadapt.errors import ConfigError
from ttsadapt.plugins.methods.full_ft import FullFt
from ttsadapt.plugins.methods.lm_lora import LmLora
from ttsadapt.plugins.methods.lora import Lora
from ttsadapt.plugins.methods.zero_shot import ZeroShot


def test_methods_are_registered():
    from ttsadapt.registry import build_registry

    registry = build_registry(autoload=False)
    for name in ("zero_shot", "lora", "lm_lora", "full_ft"):
        assert registry.get("method", name).name == name
    assert registry.get("backbone", "neutts").name == "neutts"


def test_zero_shot_is_the_untouched_anchor(tmp_path, data):
    backbone = tiny_neutts()
    result = ZeroShot().adapt(backbone, data, make_ctx(tmp_path))
    assert result.trainable_params == 0
    assert result.total_params == backbone.parameter_counts()[0]
    assert ZeroShot.trains is False


def test_lm_lora_adapts_only_qkv_with_rank_8_alpha_16(tmp_path, data):
    backbone = tiny_neutts()
    params = dict(TINY_TRAIN, max_steps=2, save_every=2, val_every=2)
    result = LmLora(**params).adapt(backbone, data, make_ctx(tmp_path))
    trainable = {n for n, p in backbone.module.named_parameters() if p.requires_grad}
    assert {n.split(".")[-4] for n in trainable} == {"q_proj", "k_proj", "v_proj"}
    assert result.trainable_params == 2 * 8 * ((64 + 64) + 2 * (64 + 32))
    assert '"lora_alpha": 16.0' in (tmp_path / "adapter" / "adapter_config.json").read_text()


def test_full_ft_trains_everything_and_falls_fast(tmp_path, data):
    backbone = tiny_neutts()
    params = dict(TINY_TRAIN, lr=3e-3, max_steps=20, val_every=10, save_every=10)
    result = FullFt(**params).adapt(backbone, data, make_ctx(tmp_path))
    assert result.trainable_params == result.total_params
    train = [r["train_loss"] for r in result.curves if "train_loss" in r]
    assert train[-1] < train[0] - 1.0
    assert (tmp_path / "adapter" / "trainable.safetensors").is_file()
    assert (tmp_path / "adapter" / "upstream" / "config.json").is_file()  # a transformers folder
    assert FullFt().params.lr == 1e-5  # upstream's full fine-tuning lr


def test_decoder_scope_and_empty_training_data_are_config_errors(tmp_path, data):
    with pytest.raises(ConfigError, match="no trainable decoder"):
        Lora(scope="decoder", **TINY_TRAIN).adapt(tiny_neutts(), data, make_ctx(tmp_path))
    data.train = []
    with pytest.raises(ConfigError, match="train split is empty"):
        Lora(scope="lm", **TINY_TRAIN).adapt(tiny_neutts(), data, make_ctx(tmp_path))


def test_unknown_param_is_refused():
    with pytest.raises(ValueError, match="rnak"):
        Lora(rnak=4)
