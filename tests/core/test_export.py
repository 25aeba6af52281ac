"""``ttsadapt export``: a run's adapter in PEFT's and NeuTTS's formats, with a model card; a run's
``adapter/`` loads with ``PeftModel.from_pretrained``. The runs are real: the tiny NeuTTS (a
transformers Qwen2 LM, mel_vq stand-in codec) adapted with LoRA by the runner."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import DOUBLES, cli, make_corpus

from ttsadapt.registry import build_registry
from ttsadapt.runner import SuiteRunner
from ttsadapt.suite import load_suite

BACKBONE = {
    "model": "tiny",
    "codec": "mel_vq",
    "mel_vq_codes": 32,
    "codebook_size": 256,
    "tiny_hidden": 64,
    "max_length": 160,
    "min_new_tokens": 5,
}
TRAIN = "max_steps = 4, batch_size = 2, grad_accum = 1, warmup_steps = 1, val_every = 2, "
TRAIN += "save_every = 2, lr = 0.01"


def _toml(params: dict) -> str:
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in params.items()) + " }"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{method: run folder} of a suite with the zero-shot anchor, LoRA and a full fine-tune."""
    root = tmp_path_factory.mktemp("export")
    manifest = make_corpus(root / "corpus", speakers=("a",), n_train=4, n_eval=2)
    path = root / "ex.toml"
    path.write_text(
        f"""name = "ex"
version = "1"
anchor = "zero_shot"
seeds = [0]

[corpus]
manifest = "{manifest}"

[[data]]
name = "spk-a"
speakers = ["a"]

[evaluation]
split = "eval"
max_items = 2

[[backbones]]
name = "neutts"
params = {_toml(BACKBONE)}

[[methods]]
name = "zero_shot"

[[methods]]
name = "lora"
params = {{ rank = 4, scope = "lm", {TRAIN} }}

[[methods]]
name = "full_ft"
params = {{ {TRAIN} }}

[[metrics]]
name = "double_rms"
"""
    )
    registry = build_registry(extra_modules=[DOUBLES], autoload=False)
    suite = load_suite(path, registry)
    summary = SuiteRunner(suite, registry, results=root / "results").run()
    assert summary.counts() == {"ok": 3}, [o.error for o in summary.outcomes]
    return {r.method: root / "results" / "ex" / "runs" / r.run_id for r in suite.runs}


def _trained(run_dir):
    """The tiny NeuTTS with the run's weights, as `ttsadapt speak --adapter` loads it."""
    from ttsadapt.speak import load_backbone

    return load_backbone(build_registry(autoload=False), "neutts", {}, adapter=run_dir)


def _base_lm():
    from ttsadapt.plugins.backbones.neutts import NeuTTS

    backbone = NeuTTS(**BACKBONE)
    backbone.load("cpu")
    return backbone.module


IDS = torch.tensor([[5, 40, 41, 42, 43, 44, 200, 210, 230]])


def _logits(module):
    with torch.no_grad():
        return module(input_ids=IDS).logits


def test_a_runs_adapter_folder_loads_with_peft(runs):
    from peft import PeftModel

    adapter = runs["lora"] / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((adapter / "adapter_config.json").read_text())["peft_type"] == "LORA"
    expected = _logits(_trained(runs["lora"]).module)
    base = _base_lm()
    before = _logits(base)
    got = _logits(PeftModel.from_pretrained(base, adapter))
    torch.testing.assert_close(got, expected)
    assert (got - before).abs().max() > 1e-4  # the adapter changed the model: it was loaded


def test_export_peft_and_neutts_load_upstream_with_a_model_card(runs, tmp_path):
    from peft import PeftModel

    expected = _logits(_trained(runs["lora"]).module)
    for fmt in ("peft", "neutts"):
        out = tmp_path / fmt
        r = cli("export", str(runs["lora"]), "--format", fmt, "--out", str(out))
        assert r.returncode == 0, r.stderr
        assert f"{fmt} export of {runs['lora'].name} -> {out}" in r.stdout
        config = json.loads((out / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == "tiny" and config["peft_type"] == "LORA"
        got = _logits(PeftModel.from_pretrained(_base_lm(), out))
        torch.testing.assert_close(got, expected)
        assert (out / "mel_vq_codebook.npz").is_file()  # the codec the run spoke with
        card = (out / "README.md").read_text()
        assert card.startswith('---\nbase_model: "tiny"\nlibrary_name: peft\n')
        assert "# neutts · lora · spk-a · seed 0" in card
        assert "| rank | `4` |" in card and "| max_steps | `4` |" in card
        assert "Trained on " in card and "Recipe `spk-a`: speakers a" in card
        record = json.loads((runs["lora"] / "records" / "double_rms.json").read_text())
        o = record["outputs"]["rms_db"]
        anchor = json.loads((runs["zero_shot"] / "records" / "double_rms.json").read_text())
        a = anchor["outputs"]["rms_db"]["mean"]  # None where the untrained model never spoke
        row = (
            f"| double_rms v1 | rms_db ↑ | {o['mean']:.3f} [{o['ci_low']:.3f}, {o['ci_high']:.3f}]"
            f" | {o['n']} | {record['n_errors']} | {'–' if a is None else f'{a:.3f}'} |"
        )
        assert row in card.splitlines(), card
        assert f'PeftModel.from_pretrained(lm, "{out}")' in card or fmt == "peft"
    assert json.loads((tmp_path / "neutts" / "adapter_config.json").read_text())["task_type"] == (
        "CAUSAL_LM"
    )


def test_export_neutts_without_the_training_time_copy_loads_the_backbone(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["lora"], run)
    shutil.rmtree(run / "adapter" / "upstream")
    r = cli("export", str(run), "--format", "neutts")
    assert r.returncode == 0, r.stderr
    out = run / "export" / "neutts"
    from peft import PeftModel

    got = _logits(PeftModel.from_pretrained(_base_lm(), out))
    torch.testing.assert_close(got, _logits(_trained(runs["lora"]).module))


def test_full_fine_tune_exports_a_transformers_checkpoint_not_peft(runs, tmp_path):
    from transformers import AutoModelForCausalLM

    r = cli("export", str(runs["full_ft"]), "--format", "peft", "--out", str(tmp_path / "p"))
    assert r.returncode == 2
    assert "trained weights (trainable.safetensors, a full fine-tune), not a PEFT adapter" in (
        r.stderr
    )
    assert "--format neutts writes the backbone's own format" in r.stderr
    assert not (tmp_path / "p").exists()
    r = cli("export", str(runs["full_ft"]), "--format", "neutts", "--out", str(tmp_path / "n"))
    assert r.returncode == 0, r.stderr
    lm = AutoModelForCausalLM.from_pretrained(tmp_path / "n")
    torch.testing.assert_close(_logits(lm), _logits(_trained(runs["full_ft"]).module))


@pytest.mark.parametrize(
    ("method", "fmt", "message"),
    [
        ("zero_shot", "peft", "no adapter/ folder: method 'zero_shot' trained nothing"),
        ("lora", "voxcpm", "--format voxcpm is the format of backbone 'voxcpm2', but run"),
    ],
)
def test_export_refusals_say_why(runs, method, fmt, message, tmp_path):
    r = cli("export", str(runs[method]), "--format", fmt, "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert message in r.stderr
    if fmt == "voxcpm":
        assert "use --format peft or --format neutts" in r.stderr
