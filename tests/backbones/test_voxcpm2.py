"""VoxCPM2 backbone: tiny offline model, loss parts, LoRA scopes/counts/export, upstream layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")

from ttsadapt.errors import ConfigError  # noqa: E402
from ttsadapt.plugins.backbones.voxcpm2 import VoxCPM2Backbone  # noqa: E402
from ttsadapt.types import Clip, SynthesisRequest  # noqa: E402

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
TEXTS = [
    "and a good deal of property.",
    "the family of dashwood had long been settled in sussex.",
    "their estate was large, and their residence was at norland park.",
]


@pytest.fixture(scope="module")
def speech_clips(tmp_path_factory) -> list[Clip]:
    """Three real audiobook clips cut to 1.6 s (keeps CPU training steps short)."""
    from ttsadapt.audio import load_audio, write_audio

    wavs = sorted(LIBRIVOX.glob("*.wav"))[:3]
    if len(wavs) < 3:
        pytest.skip("pocketsphinx-testdata (Debian) is not installed")
    out = tmp_path_factory.mktemp("speech")
    clips = []
    for i, wav in enumerate(wavs):
        audio, sr = load_audio(wav, target_sr=16000)
        path = out / wav.name
        write_audio(path, audio[sr // 2 : sr // 2 + int(1.6 * sr)], sr)
        clips.append(Clip(id=wav.stem, audio=path, text=TEXTS[i], speaker="s1", language="en"))
    return clips


def _loaded(**params) -> VoxCPM2Backbone:
    backbone = VoxCPM2Backbone(**params)
    backbone.load("cpu")
    return backbone


def _seeded_loss(backbone, batch, seed=0) -> dict[str, float]:
    torch.manual_seed(seed)
    with torch.no_grad():
        return {k: float(v) for k, v in backbone.loss(batch).items()}


def test_import_works_without_torchaudio_in_a_fresh_process():
    code = (
        "import sys\n"
        "from ttsadapt.plugins.backbones.voxcpm2._import import import_voxcpm2\n"
        "m = import_voxcpm2()\n"
        "import voxcpm\n"
        "assert hasattr(m, 'VoxCPM2Model') and hasattr(voxcpm, 'VoxCPM')\n"
        "print('torchaudio' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    # torchaudio is absent here: the stand-in must be gone after the import
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_target_modules_by_scope_name_attention_linears_only():
    b = _loaded()
    lm, dec, every = b.target_modules("lm"), b.target_modules("decoder"), b.target_modules("all")
    p = b.params
    assert len(lm) == 4 * (p.lm_layers + p.residual_layers)
    assert len(dec) == 4 * p.local_layers
    assert sorted(every) == sorted(lm + dec)
    assert all(n.startswith(("base_lm.", "residual_lm.")) for n in lm)
    assert all(n.startswith("feat_decoder.estimator.") for n in dec)
    assert not any("mlp" in n or "feat_encoder" in n for n in every)
    assert b.frozen_modules() == ["audio_vae"]
    with pytest.raises(ConfigError, match="unknown adapter scope 'ffn'"):
        b.target_modules("ffn")


def test_collate_masks_only_target_audio_and_stops_at_its_end(speech_clips):
    b = _loaded()
    examples = b.prepare(speech_clips[:2])
    assert [e.audio_feats.shape[1:] for e in examples] == [(4, 80), (4, 80)]
    batch = b.collate(examples)
    for row, ex in enumerate(examples):
        n_text, n_audio = len(ex.text_ids), ex.audio_feats.shape[0]
        assert int(batch["loss_mask"][row].sum()) == n_audio
        assert int(batch["labels"][row].sum()) == 1
        stop_at = int(batch["labels"][row].nonzero())
        assert stop_at == n_text + n_audio  # last target patch (text, 101, audio...)
        assert batch["loss_mask"][row, stop_at] == 1 and batch["loss_mask"][row, stop_at + 1] == 0
    # a reference clip is packed in front and gets no loss
    ref_clip = Clip(**{**speech_clips[0].__dict__, "ref_audio": speech_clips[1].audio})
    ex = b.prepare([ref_clip])[0]
    packed = b.collate([ex])
    assert packed["text_tokens"][0, 0] == 103
    assert int(packed["loss_mask"].sum()) == ex.audio_feats.shape[0]


def test_bad_clip_is_skipped_with_its_reason(speech_clips, tmp_path):
    b = _loaded()
    bad = Clip(id="missing", audio=tmp_path / "nope.wav", text="hi", speaker="s", language="en")
    examples = b.prepare([speech_clips[0], bad])
    assert len(examples) == 1
    assert b.last_prepare_errors[0][0] == "missing"
    assert "not found" in b.last_prepare_errors[0][1]


def test_lora_all_scope_trains_loss_falls_and_exports_to_voxcpm_format(speech_clips, tmp_path):
    from ttsadapt.plugins.backbones.voxcpm2._import import import_voxcpm2
    from ttsadapt.plugins.backbones.voxcpm2._io import base_state_dict
    from ttsadapt.training.adapters import apply_lora

    b = _loaded()
    batch = b.collate(b.prepare(speech_clips))
    before = _seeded_loss(b, batch)
    assert set(before) == {"loss", "loss_diff", "loss_stop"}
    assert before["loss"] == pytest.approx(before["loss_diff"] + before["loss_stop"], rel=1e-5)

    apply_lora(b, "all", rank=4, alpha=8)
    trainable = [n for n, p in b.module.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # zero-initialised B: the adapted model starts as the base model
    assert _seeded_loss(b, batch)["loss"] == pytest.approx(before["loss"], rel=1e-5)

    opt = torch.optim.AdamW([p for p in b.module.parameters() if p.requires_grad], lr=1e-2)
    b.module.train()
    for step in range(12):
        torch.manual_seed(100 + step)
        out = b.loss(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    after = _seeded_loss(b, batch)
    assert after["loss"] < before["loss"]

    # export in voxcpm's own format and load it with voxcpm's own loader
    export = tmp_path / "voxcpm_lora"
    b.export_adapter(export)
    meta = json.loads((export / "lora_config.json").read_text())
    assert meta["lora_config"]["enable_lm"] and meta["lora_config"]["enable_dit"]
    assert meta["lora_config"]["r"] == 4 and meta["lora_config"]["alpha"] == 8
    vox = import_voxcpm2()
    cfg = vox.VoxCPMConfig.model_validate(
        {k: v for k, v in b.config.items() if k != "ttsadapt_codec"}
    )
    upstream = vox.VoxCPM2Model(
        cfg, b.tokenizer, b.module.audio_vae, vox.LoRAConfig(**meta["lora_config"]), device="cpu"
    )
    upstream.load_state_dict(base_state_dict(b.module), strict=False)
    loaded, skipped = upstream.load_lora_weights(str(export))
    assert skipped == [] and len(loaded) == 2 * len(b.target_modules("all"))
    upstream.train()
    torch.manual_seed(0)
    with torch.no_grad():
        out = upstream(
            batch["text_tokens"],
            batch["text_mask"],
            batch["audio_feats"],
            batch["audio_mask"],
            batch["loss_mask"],
            batch["position_ids"],
            batch["labels"],
        )
    assert float(out["loss/diff"] + out["loss/stop"]) == pytest.approx(after["loss"], rel=1e-4)

    # ttsadapt's own adapter round trip (PEFT format)
    b.save_adapter(tmp_path / "adapter")
    fresh = _loaded()
    fresh.load_adapter(tmp_path / "adapter")
    assert _seeded_loss(fresh, batch)["loss"] == pytest.approx(after["loss"], rel=1e-5)


def test_save_in_upstream_layout_and_load_back(speech_clips, tmp_path):
    b = _loaded(lm_layers=2)
    batch = b.collate(b.prepare(speech_clips[:2]))
    folder = b.save_pretrained(tmp_path / "tiny_voxcpm2")
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert json.loads((folder / "config.json").read_text())["architecture"] == "voxcpm2"
    again = _loaded(model=str(folder))
    assert again.params.model == str(folder)
    assert again.token_count("hello") == b.token_count("hello")
    assert _seeded_loss(again, batch) == pytest.approx(_seeded_loss(b, batch), rel=1e-6)


def _saved(tmp_path) -> Path:
    return _loaded(lm_layers=2).save_pretrained(tmp_path / "m")


def test_missing_or_partial_checkpoint_folders_fail_with_the_file_named(tmp_path):
    with pytest.raises(ConfigError, match=r"config\.json not found"):
        _loaded(model=str(tmp_path))
    folder = _saved(tmp_path)
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:5000])
    with pytest.raises(ConfigError, match="truncated or corrupt"):
        _loaded(model=str(folder))
    (folder / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="no model weights"):
        _loaded(model=str(folder))


def test_config_that_does_not_match_the_weights_is_reported(tmp_path):
    folder = _saved(tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["lm_config"]["intermediate_size"] += 32
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="do not match the shapes"):
        _loaded(model=str(folder))
    cfg["lm_config"]["intermediate_size"] -= 32
    cfg["lm_config"]["num_hidden_layers"] += 1
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="missing"):
        _loaded(model=str(folder))


def test_unreachable_hub_id_fails_fast_with_a_hint():
    with pytest.raises(ConfigError, match="local-dir"):
        _loaded(model="openbmb/VoxCPM2-not-cached")


def test_rank_too_large_and_targets_matching_nothing_are_config_errors():
    from ttsadapt.training.adapters import apply_lora

    b = _loaded()
    with pytest.raises(ConfigError, match="larger than layer"):
        apply_lora(b, "all", rank=4096)
    with pytest.raises(ConfigError, match="match nothing"):
        apply_lora(b, "all", rank=4, targets=["base_lm.layers.0.self_attn.nope"])


def test_synthesis_modes_are_deterministic_and_fall_back_without_prompt(speech_clips):
    from ttsadapt.audio import load_audio

    b = _loaded()
    prompt, sr = load_audio(speech_clips[0].audio)
    req = SynthesisRequest(
        id="u1",
        text="good morning",
        language="en",
        speaker="s1",
        prompt_audio=prompt,
        prompt_sample_rate=sr,
        prompt_text=speech_clips[0].text,
    )
    fast = {"max_len": 6, "inference_timesteps": 2}
    for mode in ("plain", "clone", "continuation", "clone+continuation"):
        torch.manual_seed(0)
        first = b.synthesize([req], {**fast, "mode": mode})[0]
        torch.manual_seed(0)
        second = b.synthesize([req], {**fast, "mode": mode})[0]
        assert first.dtype == np.float32 and first.ndim == 1 and first.size > 0
        assert np.isfinite(first).all() and np.abs(first).max() <= 1.0
        assert np.array_equal(first, second), mode
    bare = SynthesisRequest(id="u2", text="hi", language="en", speaker="s1")
    b.synthesize([bare], {**fast, "mode": "clone"})
    assert b.last_synthesis_notes == [("u2", "mode 'clone' needs prompt audio; used 'plain'")]
    with pytest.raises(ConfigError, match="temperature"):
        b.synthesize([bare], {"temperature": 0.7})


def test_mel_codec_round_trip_keeps_the_spectrum(speech_clips):
    from ttsadapt.audio import load_audio
    from ttsadapt.plugins.backbones.voxcpm2._mel import MelCodec

    codec = MelCodec()
    audio, _ = load_audio(speech_clips[1].audio, target_sr=16000)
    feats = codec.encode_numpy(audio)
    assert feats.shape == (len(audio) // 160, 80)
    rebuilt = codec.decode_numpy(feats)
    assert rebuilt.shape == (feats.shape[0] * 160,)
    again = codec.encode_numpy(rebuilt)
    assert np.abs(again - feats).mean() < 0.1  # white noise at -26 dBFS: ~0.65
    assert np.corrcoef(feats.ravel(), again.ravel())[0, 1] > 0.98


@pytest.mark.slow
def test_full_size_lora_counts_match_the_voxcpm2_paper():
    """Meta device, no weights: 4.5 M (rank 8) and 72.4 M (rank 128) of 2.39 B, within 2 %."""
    from peft import LoraConfig, inject_adapter_in_model

    from ttsadapt.training.adapters import exact_names_regex

    for rank, expected_m, expected_pct in ((8, 4.5, 0.19), (128, 72.4, 3.03)):
        b = VoxCPM2Backbone(model="full-size", codec="audiovae")
        b.load("meta")
        names = b.target_modules("all")
        assert len(names) == 4 * (28 + 8 + 12)
        config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=exact_names_regex(names))
        inject_adapter_in_model(config, b.module)
        params = dict(b.module.named_parameters())
        lora = sum(p.numel() for n, p in params.items() if "lora_" in n)
        base = sum(p.numel() for n, p in params.items() if "lora_" not in n)
        assert base / 1e9 == pytest.approx(2.39, rel=0.01)
        assert lora / 1e6 == pytest.approx(expected_m, rel=0.02)
        assert 100 * lora / base == pytest.approx(expected_pct, rel=0.02)


def test_missing_voxcpm_says_how_to_install_it(monkeypatch):
    import importlib.util
    import sys

    from ttsadapt.plugins.backbones.voxcpm2 import _import as _voxcpm_import

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "voxcpm" else real(name, *a)
    )
    monkeypatch.delitem(sys.modules, "voxcpm.model.voxcpm2", raising=False)
    with pytest.raises(ConfigError, match=r"pip install --no-deps voxcpm==2\.0\.3"):
        _voxcpm_import.import_voxcpm2()
