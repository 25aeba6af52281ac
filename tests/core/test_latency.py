"""The runner's latency record, and int8 synthesis of the tiny NeuTTS as a synthesis setting."""

import json

import numpy as np
import pytest
from helpers import DOUBLES, make_corpus, write_suite

from ttsadapt.leaderboard import build_leaderboard, load_results, summarise
from ttsadapt.registry import build_registry
from ttsadapt.runner import SuiteRunner
from ttsadapt.suite import load_suite


@pytest.fixture()
def manifest(tmp_path):
    return make_corpus(tmp_path / "corpus")


_PEAK_CHECK = """
import json, numpy as np
from ttsadapt.latency import measure
with measure("cpu") as big:
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    del block
with measure("cpu") as small:
    sum(range(1000))
print(json.dumps([big.wall_s, big.peak_rss_mb, big.peak_gpu_mb, small.wall_s, small.peak_rss_mb]))
"""


def test_measure_resets_the_peak_for_each_call():
    """In a fresh process: inside this test session, memory freed by earlier tests stays resident
    and a new array can reuse it without raising the peak (it failed that way in the full run)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _PEAK_CHECK], capture_output=True, text=True, check=True
    ).stdout
    big_wall, big_peak, big_gpu, small_wall, small_peak = json.loads(out.strip().splitlines()[-1])
    assert big_wall > 0 and small_wall > 0
    assert big_gpu is None  # CPU: no CUDA peak
    # the peak of the first call includes the 64 MiB array; the second call's peak was reset
    assert big_peak - small_peak > 48, (big_peak, small_peak)


def test_every_run_records_its_latency(tmp_path, manifest):
    registry = build_registry(extra_modules=[DOUBLES], autoload=False)
    path = write_suite(tmp_path, manifest, backbone_params="params = { sleep_s = 0.05 }")
    suite = load_suite(path, registry)
    SuiteRunner(suite, registry, results=tmp_path / "res").run()
    for run in suite.runs:
        run_dir = tmp_path / "res/t/runs" / run.run_id
        rec = json.loads((run_dir / "records/latency.json").read_text())
        assert rec["metric"] == "latency" and rec["headline"] == "rtf"
        assert set(rec["outputs"]) == {"rtf", "first_audio_s", "peak_rss_mb"}  # no GPU here
        assert all(o["higher_is_better"] is False for o in rec["outputs"].values())
        rows = [json.loads(x) for x in (run_dir / "synthesis.jsonl").read_text().splitlines()]
        scores = [
            json.loads(x) for x in (run_dir / "scores/latency.jsonl").read_text().splitlines()
        ]
        assert [s["item"] for s in scores] == [r["item"] for r in rows]
        for row, score in zip(rows, scores):
            # 4 items spoken in one call, each sleeping 50 ms: the first audio comes with the call
            assert score["values"]["first_audio_s"] == row["first_audio_s"] >= 4 * 0.05
            assert score["values"]["rtf"] == pytest.approx(row["synth_s"] / row["duration_s"])
            assert row["synth_s"] == pytest.approx(row["first_audio_s"] / 4)
            assert score["values"]["peak_rss_mb"] > 50  # a Python process with torch loaded
        out = rec["outputs"]["first_audio_s"]
        assert out["n"] == 4 and out["ci_low"] <= out["mean"] <= out["ci_high"]
    summary = summarise(load_results(tmp_path / "res/t"))
    lat = summary.table[summary.table["metric"] == "latency"]
    assert set(lat["output"]) == {"rtf", "first_audio_s", "peak_rss_mb"}
    adapted = lat[
        (lat["output"] == "rtf")
        & ~lat["system"].isin(summary.systems.loc[summary.systems["is_anchor"], "system"])
    ]
    assert len(adapted) == 2 and np.isfinite(adapted["delta"].to_numpy(float)).all()
    # the mean rank stays a quality rank: here the rank of the one quality metric
    rms = summary.table[summary.table["metric"] == "double_rms"].set_index("system")["rank"]
    for row in summary.systems.itertuples():
        assert row.mean_rank == rms[row.system]
    board = build_leaderboard(tmp_path / "res", "t")["md"].read_text()
    assert "latency" in board


NEUTTS_SUITE = """name = "n"
anchor = "zero_shot"
device = "cpu"

[synthesis]
int8 = [false, true]
min_new_tokens = 10
max_length = 220

[corpus]
manifest = "{manifest}"

[evaluation]
split = "eval"
max_items = 2
batch_size = 1

[[backbones]]
name = "neutts"
params = {{ model = "tiny", codec = "mel_vq", codec_fit = "{manifest}", mel_vq_codes = 64, codebook_size = 64 }}

[[methods]]
name = "zero_shot"

[[metrics]]
name = "wada_snr"
"""


def test_tiny_neutts_speaks_in_int8_and_the_leaderboard_shows_it(tmp_path, manifest):
    registry = build_registry()
    path = tmp_path / "n.toml"
    path.write_text(NEUTTS_SUITE.format(manifest=manifest))
    suite = load_suite(path, registry)
    assert [r.synthesis["int8"] for r in suite.runs] == [False, True]
    summary = SuiteRunner(suite, registry, results=tmp_path / "res").run()
    assert summary.counts() == {"ok": 2}, [o.error for o in summary.outcomes]
    for run in suite.runs:
        run_dir = tmp_path / "res/n/runs" / run.run_id
        rows = [json.loads(x) for x in (run_dir / "synthesis.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and all(r["error"] is None and r["duration_s"] > 0 for r in rows)
    labels = set(summarise(load_results(tmp_path / "res/n")).systems["label"])
    assert any(label.endswith("int8=True, max_length=220, min_new_tokens=10") for label in labels)
    board = build_leaderboard(tmp_path / "res", "n")["md"].read_text()
    assert "int8=True" in board and "int8=False" in board


def test_int8_copy_merges_lora_and_leaves_the_live_model_alone():
    import torch

    from ttsadapt.plugins.backbones.neutts import NeuTTS
    from ttsadapt.training.adapters import apply_lora

    backbone = NeuTTS(model="tiny", codec="none", codebook_size=64, tiny_hidden=64)
    backbone.load("cpu")
    ids = torch.randint(0, 200, (1, 24))
    with torch.no_grad():
        base = backbone.module(ids).logits
    apply_lora(backbone, "lm", 4)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in backbone.module.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
        live = backbone.module(ids).logits
        s = backbone.decoding_settings({"int8": True})
        q = backbone._lm(s)
        quant = q(ids).logits
    assert not torch.allclose(live, base, atol=1e-3)  # the adapter matters
    # int8 follows the adapted model, not the base one (LoRA merged before quantising)
    assert (quant - live).abs().mean() < 0.2 * (live - base).abs().mean()
    lin = q.model.layers[0].self_attn.q_proj
    assert type(lin).__module__.startswith("torch.ao.nn.quantized.dynamic")
    assert "lora" in type(backbone.module.model.layers[0].self_attn.q_proj).__module__
    assert backbone._lm(s) is q  # cached while the weights stay the same
    with torch.no_grad():
        next(backbone.module.parameters()).add_(0.0)  # an in-place update: a new copy
    assert backbone._lm(s) is not q
