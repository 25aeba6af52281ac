"""Leaderboard from 10,000 synthetic records (500 runs x 4 metrics x 5 outputs) in under 5 s.

The suite: 2 backbones x (zero-shot anchor + 7 LoRA ranks x 7 data recipes) = 100 systems, 5 seeds
each = 500 runs; 4 metrics with 5 outputs each = 2,000 record files holding 10,000 output records,
and 100 utterances per run x metric (200,000 per-utterance rows). The timed call builds all three
files including every statistic (pooled BCa intervals, paired deltas with intervals, Wilcoxon
tests, ranks) and the figures. The baseline is reading the same files with ``json.load`` alone.

    .venv/bin/pytest benchmarks/perf/test_leaderboard_perf.py --benchmark-enable -p no:cacheprovider
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "leaderboard"))

from fake_results import make_results  # noqa: E402

from ttsadapt.leaderboard import build_leaderboard  # noqa: E402

BUDGET_S = 5.0
HEADLINES = {"dnsmos": "ovrl", "speaker_sim": "sim", "wada_snr": "snr_db", "cer": "cer"}


@pytest.fixture(scope="module")
def big_suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("perf_results")
    fake = make_results(
        root,
        suite="perf",
        backbones=("voxcpm2", "neutts"),
        ranks=(4, 8, 16, 32, 64, 128, 256),
        recipes=tuple(f"recipe{i}" for i in range(7)),
        seeds=(0, 1, 2, 3, 4),
        n_outputs=5,
        n_items=100,
        full_finetune=False,
        n_failed=0,
        n_unfinished=0,
    )
    assert fake.n_records * 5 == 10_000
    return fake


def _read_all_json(suite_dir: Path) -> int:
    n = 0
    for path in suite_dir.glob("runs/*/records/*.json"):
        json.loads(path.read_text())
        n += 1
    for path in suite_dir.glob("runs/*/scores/*.jsonl"):
        for line in path.read_text().splitlines():
            json.loads(line)
    return n


def test_leaderboard_10k_records_under_5s(benchmark, big_suite):
    t0 = time.perf_counter()
    _read_all_json(big_suite.suite_dir)
    baseline_s = time.perf_counter() - t0

    paths = benchmark.pedantic(
        build_leaderboard,
        args=(big_suite.root, big_suite.suite),
        kwargs={"headlines": HEADLINES},
        rounds=1,
        iterations=1,
    )
    t0 = time.perf_counter()
    build_leaderboard(big_suite.root, big_suite.suite, headlines=HEADLINES)
    elapsed_s = time.perf_counter() - t0
    benchmark.extra_info.update(
        {
            "elapsed_s": elapsed_s,
            "json_read_baseline_s": baseline_s,
            "ratio_to_json_read": elapsed_s / baseline_s,
        }
    )
    print(
        f"\nleaderboard {elapsed_s:.2f} s; reading the JSON alone {baseline_s:.2f} s; "
        f"ratio {elapsed_s / baseline_s:.1f}"
    )
    assert all(p.stat().st_size > 0 for p in paths.values())
    assert elapsed_s < BUDGET_S, f"leaderboard took {elapsed_s:.2f} s for 10,000 records"
