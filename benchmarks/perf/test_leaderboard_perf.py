"""Leaderboard from 10,000 synthetic records (500 runs x 4 metrics x 5 outputs) in under 5 s.

The suite: 2 backbones x (zero-shot anchor + 7 LoRA ranks x 7 data recipes) = 100 systems, 5 seeds
each = 500 runs; 4 metrics with 5 outputs each = 2,000 record files holding 10,000 output records,
and 100 utterances per run x metric (200,000 per-utterance rows). The timed call builds all three
files including every statistic (pooled BCa intervals, paired deltas with intervals, Wilcoxon
tests, ranks) and the three figures.

The machine is shared, so two clocks are kept:

* CPU time (``time.process_time``: this process, all its threads) is what the 5 s budget is checked
  against: it is what the build costs on an otherwise idle 2-core machine, whatever the others run.
* Wall time is reported, and checked against the budget only when the machine is not
  oversubscribed (1-minute load average below the number of cores).

A plain baseline is timed in the same run: reading every record and per-utterance score file with
the standard library's ``json`` and nothing else. The build (which also parses, pairs, bootstraps
and draws) must stay within ``MAX_RATIO`` times that baseline, on CPU time.

    .venv/bin/pytest benchmarks/perf/test_leaderboard_perf.py --benchmark-enable -p no:cacheprovider -s
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

from fake_results import make_results

from ttsadapt.leaderboard import build_leaderboard

BUDGET_S = 5.0
MAX_RATIO = 3.5  # build CPU time / stdlib-json-read CPU time (measured ~2.3 to 2.8; was ~4.6)
REPEATS = 2  # timed builds after one warm-up; the fastest counts (as timeit does)
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


def _timed(fn, *args, **kwargs) -> tuple[object, float, float]:
    """``(result, cpu_s, wall_s)`` of one call."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.process_time() - cpu0, time.perf_counter() - wall0


def _contended() -> bool:
    return os.getloadavg()[0] >= (os.cpu_count() or 1)


def test_leaderboard_10k_records_under_5s(benchmark, big_suite):
    # warm-up (imports, page cache), as the pytest-benchmark measurement
    benchmark.pedantic(
        build_leaderboard,
        args=(big_suite.root, big_suite.suite),
        kwargs={"headlines": HEADLINES},
        rounds=1,
        iterations=1,
    )
    base = [_timed(_read_all_json, big_suite.suite_dir)[1:] for _ in range(REPEATS)]
    runs = []
    for _ in range(REPEATS):
        paths, cpu_s, wall_s = _timed(
            build_leaderboard, big_suite.root, big_suite.suite, headlines=HEADLINES
        )
        runs.append((cpu_s, wall_s))
    base_cpu, base_wall = min(c for c, _ in base), min(w for _, w in base)
    cpu_s, wall_s = min(c for c, _ in runs), min(w for _, w in runs)
    contended = _contended()
    info = {
        "cpu_s": cpu_s,
        "wall_s": wall_s,
        "json_read_baseline_cpu_s": base_cpu,
        "json_read_baseline_wall_s": base_wall,
        "ratio_cpu": cpu_s / base_cpu,
        "ratio_wall": wall_s / base_wall,
        "load_average_1min": os.getloadavg()[0],
        "contended": contended,
    }
    benchmark.extra_info.update(info)
    print(
        f"\nleaderboard: CPU {cpu_s:.2f} s, wall {wall_s:.2f} s; "
        f"stdlib JSON read alone: CPU {base_cpu:.2f} s, wall {base_wall:.2f} s; "
        f"ratio CPU {info['ratio_cpu']:.2f}, wall {info['ratio_wall']:.2f}; "
        f"load average {info['load_average_1min']:.1f} on {os.cpu_count()} cores"
    )
    assert all(p.stat().st_size > 0 for p in paths.values())
    assert cpu_s < BUDGET_S, f"leaderboard took {cpu_s:.2f} s of CPU for 10,000 records"
    assert cpu_s / base_cpu < MAX_RATIO, (
        f"leaderboard took {cpu_s / base_cpu:.2f}x the CPU time of reading the JSON files "
        f"({cpu_s:.2f} s vs {base_cpu:.2f} s); expected under {MAX_RATIO}x"
    )
    if not contended:
        assert wall_s < BUDGET_S, f"leaderboard took {wall_s:.2f} s wall for 10,000 records"
