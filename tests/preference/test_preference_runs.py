"""``grpo`` and ``dpo`` through the runner: a suite with the tiny NeuTTS (mel_vq stand-in codec)
trains, saves its weights, speaks with them and is scored like any other run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ttsadapt.registry import build_registry
from ttsadapt.runner import SuiteRunner
from ttsadapt.suite import load_suite

DOUBLES = "ttsadapt_test_doubles_preference"
TOY = (
    "reward_weights = { pref_loudness = 1.0 }, reward_anchors = { pref_loudness = [[-40.0, 0.0], "
    "[0.0, 1.0]] }, gate_require_stop = false, gate_min_duration_s = 0.0, gate_max_s_per_char = "
    "100.0, gate_min_s_per_char = 0.0, gate_max_silence = 1.0, k = 4, max_steps = 2, lr = 0.01"
)


def _make_corpus(root: Path) -> Path:
    path = Path(__file__).resolve().parents[1] / "core" / "helpers.py"
    spec = importlib.util.spec_from_file_location("ttsadapt_core_test_helpers", path)
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    return helpers.make_corpus(root, speakers=("a",), n_train=4, n_eval=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pref")
    manifest = _make_corpus(root / "corpus")
    backbone = {
        "model": "tiny",
        "codec": "mel_vq",
        "codec_fit": str(manifest),
        "mel_vq_codes": 32,
        "codebook_size": 256,
        "tiny_hidden": 32,
        "max_length": 260,
        "min_new_tokens": 5,
    }
    params = "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in backbone.items()) + " }"
    path = root / "pref.toml"
    path.write_text(
        f"""name = "pref"
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
params = {params}

[[methods]]
name = "zero_shot"

[[methods]]
name = "grpo"
params = {{ {TOY}, prompts_per_step = 2 }}

[[methods]]
name = "dpo"
params = {{ {TOY}, adapter = "full", candidate_prompts = 2, pair_terms = "", pair_margin = 0.0, pair_max_duration_ratio = 100.0 }}

[[metrics]]
name = "pref_loudness"
"""
    )
    registry = build_registry(extra_modules=[DOUBLES], autoload=False)
    suite = load_suite(path, registry)
    summary = SuiteRunner(suite, registry, results=root / "results").run()
    assert summary.counts() == {"ok": 3}, [o.error for o in summary.outcomes]
    return {r.method: root / "results" / "pref" / "runs" / r.run_id for r in suite.runs}


def test_grpo_run_records_curves_weights_and_scores(runs):
    run = runs["grpo"]
    curves = [json.loads(x) for x in (run / "curves.jsonl").read_text().splitlines()]
    assert [c["step"] for c in curves] == [1, 2]
    assert {"reward_mean", "sample_s", "score_s", "update_s", "skipped_groups"} <= set(curves[0])
    assert (run / "adapter" / "adapter_config.json").is_file()
    record = json.loads((run / "records" / "pref_loudness.json").read_text())
    assert record["metric"] == "pref_loudness"
    summary = json.loads((run / "run.json").read_text())
    assert summary["adapt"]["stats"]["n_samples"] == 2 * 2 * 4


def test_dpo_run_saves_pairs_and_full_weights(runs):
    run = runs["dpo"]
    pairs = [json.loads(x) for x in (run / "pairs.jsonl").read_text().splitlines()]
    assert pairs and all(p["chosen"]["reward"] >= p["rejected"]["reward"] for p in pairs)
    assert (run / "adapter" / "trainable.safetensors").is_file()
    assert (run / "records" / "pref_loudness.json").is_file()


def test_speak_loads_the_trained_weights(runs):
    """``ttsadapt speak --adapter RUN`` loads each run's trained LM: not the base one."""
    import torch

    from ttsadapt.speak import load_backbone

    registry = build_registry(autoload=False)
    config = json.loads((runs["grpo"] / "config.json").read_text())
    base = registry.get("backbone", "neutts")(**config["backbone_params"])
    base.load("cpu")
    ids = torch.tensor([[5, 40, 41, 42, 43, 44, 200, 210]])
    with torch.no_grad():
        before = base.module(input_ids=ids).logits
        for method in ("grpo", "dpo"):
            trained = load_backbone(registry, "neutts", {}, adapter=runs[method]).module
            after = trained(input_ids=ids).logits
            assert torch.isfinite(after).all()
            assert (after - before).abs().max() > 1e-5, method
