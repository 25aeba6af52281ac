"""``ttsadapt speak``: text or manifest in, wavs plus a manifest ``ttsadapt score`` reads out;
``--adapter RUN_DIR`` loads what a run trained; bad input is named."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")

from ttsadapt.cli import main  # noqa: E402

TINY = ["--param", "lm_hidden=64", "--param", "lm_layers=1", "--param", "local_hidden=64"]
FAST = ["--setting", "max_len=12", "--setting", "inference_timesteps=2"]


def _speak(*args: str) -> int:
    return main(["speak", "--backbone", "voxcpm2", *TINY, *FAST, *args])


def test_text_to_one_wav(tmp_path):
    import soundfile as sf

    out = tmp_path / "hi.wav"
    assert _speak("--text", "Hello there.", "--out", str(out)) == 0
    audio, sr = sf.read(out)
    assert sr == 16000 and audio.size > 0 and np.isfinite(audio).all()


def test_manifest_to_folder_that_score_accepts(tmp_path):
    from ttsadapt.registry import build_registry
    from ttsadapt.scoring import score_manifest

    texts = tmp_path / "texts.jsonl"
    texts.write_text(
        '{"id": "a", "text": "One two.", "language": "en"}\n'
        '{"id": "b", "text": "Three four.", "language": "en"}\n'
    )
    out = tmp_path / "out"
    assert _speak("--manifest", str(texts), "--out", str(out)) == 0
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"]
    assert all((out / r["audio"]).is_file() for r in rows)
    summary = score_manifest(
        build_registry(),
        out / "manifest.jsonl",
        ["wada_snr"],
        out=tmp_path / "s.jsonl",
        cache_dir=None,
    )
    assert summary is not None
    scored = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert {r["id"] for r in scored} >= {"a", "b"}


def test_adapter_run_dir_is_loaded_and_changes_the_output(tmp_path):
    from ttsadapt.plugins.backbones.voxcpm2 import VoxCPM2Backbone
    from ttsadapt.training.adapters import apply_lora

    params = {"lm_hidden": 64, "lm_layers": 1, "local_hidden": 64}
    backbone = VoxCPM2Backbone(**params)
    backbone.load("cpu")
    apply_lora(backbone, "all", 2, None, 0.0)
    with torch.no_grad():
        for name, p in backbone.module.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    run = tmp_path / "run"
    backbone.save_adapter(run / "adapter")
    (run / "config.json").write_text(
        json.dumps({"backbone": "voxcpm2", "backbone_params": params, "method": "lora"})
    )
    base, adapted = tmp_path / "base.wav", tmp_path / "adapted.wav"
    torch.manual_seed(0)
    assert _speak("--text", "Hello.", "--out", str(base)) == 0
    torch.manual_seed(0)
    assert _speak("--adapter", str(run), "--text", "Hello.", "--out", str(adapted)) == 0
    import soundfile as sf

    a, b = sf.read(base)[0], sf.read(adapted)[0]
    assert not np.array_equal(a, b), "the adapter must change what the model says"


def test_errors_name_the_problem(tmp_path, capsys):
    assert _speak("--adapter", str(tmp_path), "--text", "x", "--out", str(tmp_path / "x.wav")) == 2
    assert "config.json" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "ok"}\n{"id": "a", "text": "again"}\n')
    assert _speak("--manifest", str(bad), "--out", str(tmp_path / "o")) != 0
    assert "bad.jsonl:2" in capsys.readouterr().err
    assert _speak("--text", "x", "--out", str(tmp_path / "x.mp3")) == 2
    assert ".wav" in capsys.readouterr().err


def test_full_fine_tuning_weights_are_loaded_from_the_run(tmp_path):
    from ttsadapt.plugins.backbones.voxcpm2 import VoxCPM2Backbone
    from ttsadapt.training.checkpoint import save_trainable

    params = {"lm_hidden": 64, "lm_layers": 1, "local_hidden": 64}
    backbone = VoxCPM2Backbone(**params)
    backbone.load("cpu")
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in backbone.module.named_parameters():
            if p.requires_grad and name.startswith("feat_decoder."):
                p.add_(torch.randn_like(p))  # stands for what fine-tuning changed
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    save_trainable(backbone.module, run / "adapter" / "trainable.safetensors")
    (run / "config.json").write_text(
        json.dumps({"backbone": "voxcpm2", "backbone_params": params, "method": "full_ft"})
    )
    import soundfile as sf

    base, tuned = tmp_path / "base.wav", tmp_path / "tuned.wav"
    torch.manual_seed(0)
    assert _speak("--text", "Hello.", "--out", str(base)) == 0
    torch.manual_seed(0)
    assert _speak("--adapter", str(run), "--text", "Hello.", "--out", str(tuned)) == 0
    assert not np.array_equal(sf.read(base)[0], sf.read(tuned)[0])
