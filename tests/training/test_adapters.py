"""LoRA injected in place: targets, rank checks, save/load, and PEFT's own format."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_neutts

from ttsadapt.errors import ConfigError
from ttsadapt.training import CheckpointError
from ttsadapt.training.adapters import adapter_size_bytes, apply_lora, load_adapter, save_adapter


def _logits(backbone, ids):
    with torch.no_grad():
        return backbone.module(input_ids=ids).logits


IDS = torch.tensor([[5, 40, 41, 42, 43, 44, 200, 210, 230]])


def test_lora_starts_as_the_base_model_and_trains_only_adapters():
    backbone = tiny_neutts()
    before = _logits(backbone, IDS)
    config = apply_lora(backbone, "lm", rank=4)
    assert config.lora_alpha == 8.0  # alpha defaults to 2 x rank
    torch.testing.assert_close(_logits(backbone, IDS), before)  # B is zero-initialised
    trainable = [n for n, p in backbone.module.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # 2 layers x (q, k, v, o); hidden 64, kv width 32: r*(in+out) each
    expected = 2 * 4 * ((64 + 64) + (64 + 32) + (64 + 32) + (64 + 64))
    assert backbone.parameter_counts()[1] == expected


def test_rank_larger_than_a_layer_is_refused():
    backbone = tiny_neutts()
    with pytest.raises(ConfigError, match=r"rank 48 is larger than layer .*k_proj.*\(64 -> 32\)"):
        apply_lora(backbone, "lm", rank=48)


def test_targets_that_match_nothing_are_refused():
    backbone = tiny_neutts()
    with pytest.raises(ConfigError, match="match nothing"):
        apply_lora(backbone, "lm", 4, targets=["model.layers.9.self_attn.q_proj"])
    with pytest.raises(ConfigError, match=r"expected torch\.nn\.Linear"):
        apply_lora(backbone, "lm", 4, targets=["model.layers.0.self_attn"])
    with pytest.raises(ConfigError, match="empty"):
        apply_lora(backbone, "lm", 4, targets=[])


def test_save_and_load_round_trip(tmp_path):
    backbone = tiny_neutts()
    apply_lora(backbone, "lm", rank=4)
    with torch.no_grad():
        for name, p in backbone.module.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    expected = _logits(backbone, IDS)
    save_adapter(backbone.module, tmp_path / "ad")
    assert adapter_size_bytes(tmp_path / "ad") > 0

    fresh = tiny_neutts()
    load_adapter(fresh.module, tmp_path / "ad")  # injects, then loads
    torch.testing.assert_close(_logits(fresh, IDS), expected)

    other = tiny_neutts()
    apply_lora(other, "lm", rank=8)
    with pytest.raises(CheckpointError, match="shape"):
        load_adapter(other.module, tmp_path / "ad")
    (tmp_path / "ad" / "adapter_config.json").unlink()
    with pytest.raises(CheckpointError, match=r"missing adapter_config\.json"):
        load_adapter(tiny_neutts().module, tmp_path / "ad")


def test_export_loads_with_peft(tmp_path):
    from peft import PeftModel

    backbone = tiny_neutts()
    apply_lora(backbone, "lm", rank=4)
    with torch.no_grad():
        for name, p in backbone.module.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    expected = _logits(backbone, IDS)
    backbone.export_adapter(tmp_path / "peft")
    assert (tmp_path / "peft" / "adapter_model.safetensors").is_file()

    base = tiny_neutts().module
    peft_model = PeftModel.from_pretrained(base, tmp_path / "peft")
    with torch.no_grad():
        got = peft_model(input_ids=IDS).logits
    torch.testing.assert_close(got, expected)
