"""End to end through the real CLI with real components: corpus builder → tiny VoxCPM2 →
zero-shot anchor and LoRA → synthesis → DNS-MOS / WADA-SNR → records → leaderboard."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SUITE = """
name = "e2e"
anchor = "zero_shot"
seeds = [0]

[corpus]
builder = "offline"
name = "e2e-corpus"
n_train = 4
n_validation = 2
n_eval = 2
speakers = [
  { id = "steady", voice = "en-us+m3", snr_db = 30 },
  { id = "varied", voice = "en-us+f3", gain_spread_db = 7.0, rate_jitter = 0.1 },
]

[[data]]
name = "varied"
speakers = ["varied"]

[evaluation]
max_items = 3
dev_items = 1
dev_metric = "wada_snr"

[[backbones]]
name = "voxcpm2"
params = { model = "tiny", max_len = 30 }

[[methods]]
name = "zero_shot"

[[methods]]
name = "lora"
params = { rank = 4, max_steps = 4, warmup_steps = 1, batch_size = 2, grad_accum = 1, val_every = 2, save_every = 2, lr = 0.001 }

[[metrics]]
name = "wada_snr"

[[metrics]]
name = "dnsmos"
"""


def _cli(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "ttsadapt", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )


def test_suite_runs_for_real_and_resumes(tmp_path):
    suite = tmp_path / "e2e.toml"
    suite.write_text(SUITE)
    env = {**os.environ, "TTSADAPT_CACHE": str(tmp_path / "cache"), "TQDM_DISABLE": "1"}
    results = tmp_path / "results"
    r = _cli("run", str(suite), "--results", str(results), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 ok" in r.stdout and "leaderboard:" in r.stdout
    runs = sorted((results / "e2e" / "runs").glob("*/DONE"))
    assert len(runs) == 2
    lora_dir = next(p.parent for p in runs if "-lora-" in p.parent.name)
    rec = json.loads((lora_dir / "records" / "dnsmos.json").read_text())
    assert rec["headline"] == "ovrl" and rec["outputs"]["ovrl"]["n"] == 3
    assert 1.0 <= rec["outputs"]["ovrl"]["mean"] <= 5.0
    assert 0 < rec["trainable_params"] < rec["total_params"] and rec["adapter_bytes"] > 0
    assert (lora_dir / "adapter").is_dir() and len(list((lora_dir / "audio").glob("*.wav"))) == 3
    checkpoints = json.loads((lora_dir / "checkpoints.json").read_text())
    assert checkpoints["dev_metric"] == "wada_snr"
    assert any(c["dev_score"] is not None for c in checkpoints["checkpoints"])
    board = (results / "e2e" / "leaderboard.md").read_text()
    assert "zero_shot (anchor)" in board and "lora" in board
    # a second invocation finds everything done
    r = _cli("run", str(suite), "--results", str(results), "--no-leaderboard", env=env)
    assert r.returncode == 0 and "2 skipped" in r.stdout
