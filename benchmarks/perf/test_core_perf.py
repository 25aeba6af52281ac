"""Core performance targets (pytest-benchmark; run with `./run.sh bench`).

- Runner overhead per run, excluding the components' own work: under 1 s. The test-double
  components do a few milliseconds of numpy work, so a run's wall time is the runner's overhead
  (record store, provenance, logging, audio writing, records with bootstrap CIs).
- Resume scan of a results folder with 1,000 finished runs: under 2 s.
"""

import json

import pytest
from helpers import DOUBLES, make_corpus, write_suite

from ttsadapt.records import atomic_write_json
from ttsadapt.registry import build_registry
from ttsadapt.runner import SuiteRunner
from ttsadapt.suite import load_suite


@pytest.fixture(scope="module")
def registry():
    return build_registry(extra_modules=[DOUBLES], autoload=False)


def test_runner_overhead_per_run(benchmark, tmp_path, registry):
    manifest = make_corpus(tmp_path / "corpus")
    suite = load_suite(write_suite(tmp_path, manifest), registry)
    runner = SuiteRunner(suite, registry, results=tmp_path / "res", overwrite="always")
    runner.eval_set()  # data loading is the data layer's work, shared by all runs
    run = suite.runs[1]

    def one_run():
        runner.store.remove(run.run_id)
        outcome = runner.execute(run)
        assert outcome.status == "ok"

    benchmark.pedantic(one_run, rounds=5, warmup_rounds=1)
    assert benchmark.stats.stats.mean < 1.0


def test_resume_scan_of_1000_finished_runs(benchmark, tmp_path, registry):
    manifest = make_corpus(tmp_path / "corpus")
    suite = load_suite(write_suite(tmp_path, manifest), registry)
    runner = SuiteRunner(suite, registry, results=tmp_path / "res")
    runs_dir = runner.store.runs_dir
    template = suite.runs[0]
    many = []
    for i in range(1000):
        run_id = f"{template.run_id}-{i:04d}"
        d = runs_dir / run_id
        atomic_write_json(
            d / "records" / "double_rms.json", {"metric": "double_rms", "metric_version": "1"}
        )
        (d / "DONE").write_text(json.dumps({"status": "ok"}))
        clone = type(template)(**{**template.__dict__, "run_id": run_id})
        many.append(clone)
    suite.runs = many

    def scan():
        plan = runner.plan()
        assert len(plan) == 1000 and all(action == "skip" for _, action in plan)

    benchmark.pedantic(scan, rounds=5, warmup_rounds=1)
    assert benchmark.stats.stats.mean < 2.0
