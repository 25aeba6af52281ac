"""Results as data: ``ttsadapt.load_results`` (a tidy DataFrame) and ``ttsadapt results``
(an lm-eval-style results.json), read from a suite the real runner ran with the test doubles."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from helpers import DOUBLES, cli, make_corpus, write_suite

import ttsadapt
from ttsadapt.registry import build_registry
from ttsadapt.runner import SuiteRunner
from ttsadapt.suite import load_suite

METHODS = (
    '[[methods]]\nname = "double_anchor"\n\n'
    '[[methods]]\nname = "double_nudge"\nparams = { target_gain = [0.5, 0.9] }\n\n'
    '[[methods]]\nname = "double_nudge"\nparams = { target_gain = 0.7, fail = true }\n'
)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """(results folder, suite file, suite): four runs, one of which fails."""
    root = tmp_path_factory.mktemp("suite")
    manifest = make_corpus(root / "corpus")
    path = write_suite(root, manifest, name="tbl", methods=METHODS)
    registry = build_registry(extra_modules=[DOUBLES], autoload=False)
    suite = load_suite(path, registry)
    results = root / "results"
    SuiteRunner(suite, registry, results=results).run()
    return results, path, suite


def _record(results, run_id, metric="double_rms"):
    return json.loads(
        (results / "tbl" / "runs" / run_id / "records" / f"{metric}.json").read_text()
    )


def test_load_results_is_one_tidy_row_per_run_metric_output(ran):
    results, _, suite = ran
    df = ttsadapt.load_results(results / "tbl")
    assert isinstance(df, pd.DataFrame)
    # each finished run also has the runner's latency record (3 outputs on CPU)
    latency = df[df.metric == "latency"]
    assert len(latency) == 3 * 3
    assert set(latency.output) == {"rtf", "first_audio_s", "peak_rss_mb"}
    df = df[df.metric != "latency"]
    assert len(df) == len(suite.runs) == 4  # 3 finished runs x 1 metric x 1 output + 1 failure
    for col in ("suite", "run_id", "backbone", "method", "data_recipe", "seed", "metric"):
        assert col in df.columns
    for col in ("metric_version", "output", "mean", "ci_low", "ci_high", "n", "n_errors"):
        assert col in df.columns
    assert {"higher_is_better", "status", "param.target_gain", "backbone_param.f0_hz"} <= set(
        df.columns
    )
    ok = df[df.status == "ok"]
    assert len(ok) == 3 and set(ok.metric) == {"double_rms"} and set(ok.output) == {"rms_db"}
    for row in ok.itertuples():
        out = _record(results, row.run_id)["outputs"]["rms_db"]
        assert row.mean == pytest.approx(out["mean"])
        assert (row.ci_low, row.ci_high, row.n) == (out["ci_low"], out["ci_high"], out["n"])
        assert row.ci_low <= row.mean <= row.ci_high
        assert row.higher_is_better is True and row.suite == "tbl" and row.seed == 0
        assert df.loc[row.Index, "backbone_param.f0_hz"] == 150.0
    anchor = ok[ok.method == "double_anchor"]
    assert len(anchor) == 1 and bool(anchor.is_anchor.iloc[0])
    assert math.isnan(anchor["param.target_gain"].iloc[0])  # the anchor has no such parameter
    nudged = ok[ok.method == "double_nudge"].sort_values("param.target_gain")
    assert list(nudged["param.target_gain"]) == [0.5, 0.9]
    assert set(nudged.data_recipe) == {"spk-a"}
    # the failed run is a row too, with its reason and no numbers
    failed = df[df.status == "failed"]
    assert len(failed) == 1
    assert "double_nudge was told to fail" in failed.error.iloc[0]
    assert failed["param.target_gain"].iloc[0] == 0.7 and pd.isna(failed["mean"].iloc[0])
    # what a user does with it: a table by parameter value
    table = ok.pivot_table(index="param.target_gain", columns="metric", values="mean")
    assert list(table.index) == [0.5, 0.9]


def test_load_results_finds_a_suite_by_name_by_suite_file_and_by_results_folder(ran):
    results, path, _ = ran
    by_dir = ttsadapt.load_results(results / "tbl")
    by_name = ttsadapt.load_results("tbl", results=results)
    by_file = ttsadapt.load_results(path, results=results)
    by_root = ttsadapt.load_results(results)
    for other in (by_name, by_file, by_root):
        pd.testing.assert_frame_equal(other, by_dir)
    from ttsadapt.errors import ConfigError

    with pytest.raises(ConfigError, match=r"nope: no such suite .*suites there: tbl"):
        ttsadapt.load_results("nope", results=results)


def test_results_command_writes_results_json_and_tidy_csv(ran, tmp_path):
    results, _, suite = ran
    out, csv = tmp_path / "results.json", tmp_path / "tidy.csv"
    r = cli("results", "tbl", "--results", str(results), "--out", str(out), "--csv", str(csv))
    assert r.returncode == 0, r.stderr
    assert "tbl: 4 runs (1 failed, 3 ok)" in r.stdout

    def no_nan(name):
        raise AssertionError(f"results.json holds {name}: not strict JSON")

    doc = json.loads(out.read_text(), parse_constant=no_nan)
    assert doc["schema"] == "ttsadapt.results/1" and doc["suite"] == "tbl"
    assert doc["n_runs"] == 4 and doc["runs_by_status"] == {"ok": 3, "failed": 1}
    assert doc["versions"]["metrics"] == {"double_rms": "1", "latency": "1"}
    assert doc["versions"]["methods"] == {"double_anchor": "1", "double_nudge": "1"}
    assert doc["metrics"]["double_rms"]["params"] == {}
    for run in suite.runs:
        config = json.loads((results / "tbl" / "runs" / run.run_id / "config.json").read_text())
        assert doc["configs"][run.run_id] == config  # the resolved config of every run
        assert doc["runs"][run.run_id]["provenance"]["packages"]["python"]
        if doc["runs"][run.run_id]["status"] == "failed":
            assert "told to fail" in doc["runs"][run.run_id]["error"]
            assert run.run_id not in doc["results"]
            continue
        record = _record(results, run.run_id)
        got = doc["results"][run.run_id]["double_rms"]
        assert got["headline"] == "rms_db"
        assert got["outputs"]["rms_db"]["mean"] == pytest.approx(
            record["outputs"]["rms_db"]["mean"]
        )
        assert got["outputs"]["rms_db"]["n"] == record["outputs"]["rms_db"]["n"]
        assert got["n_items"] == record["n_items"] and got["errors"] == record["errors"]
    tidy = pd.read_csv(csv)
    assert (tidy.metric == "latency").sum() == 3 * 3  # the runner's latency record
    tidy = tidy[tidy.metric != "latency"]
    assert len(tidy) == 4 and set(tidy.status) == {"ok", "failed"}
    assert sorted(tidy["param.target_gain"].dropna()) == [0.5, 0.7, 0.9]
    # default location: beside the suite's leaderboard
    r = cli("results", str(results / "tbl"))
    assert r.returncode == 0, r.stderr
    assert (results / "tbl" / "results.json").is_file()


def test_results_command_names_what_it_looked_for(tmp_path):
    r = cli("results", "missing-suite", "--results", str(tmp_path))
    assert r.returncode == 2
    assert "missing-suite: no such suite folder, suite file or suite under" in r.stderr
