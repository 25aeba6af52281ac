"""The typed results models read every file of a version-1 folder, resolve its conventions into
fields, write it back unchanged, and refuse what they cannot read with the file and field named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ttsadapt.leaderboard import build_leaderboard, load_results, summarise
from ttsadapt.results import (
    MetricRecord,
    ResultsError,
    RunSummary,
    ScoreRow,
    read_score_rows,
    write_score_rows,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "results_v1"
RUNS = FIXTURE / "quick" / "runs"
ANCHOR_RUN = "voxcpm2-zero_shot-a8834778f009"


def _dump(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def test_every_file_of_the_frozen_folder_loads_and_writes_back_unchanged(tmp_path):
    records = sorted(RUNS.glob("*/records/*.json"))
    summaries = sorted(RUNS.glob("*/run.json"))
    score_files = sorted(RUNS.glob("*/scores/*.jsonl"))
    assert (len(records), len(summaries), len(score_files)) == (25, 5, 25)
    for path in records:
        record = MetricRecord.from_disk(path)
        assert record.schema_version == 1 and record.headline in record.outputs
        record.to_disk(tmp_path / "r.json")
        assert (tmp_path / "r.json").read_text() == path.read_text(), path
    for path in summaries:
        summary = RunSummary.from_disk(path)
        assert summary.status == "ok" and not summary.failed
        assert _dump(summary.to_dict()) == path.read_text(), path
    for path in score_files:
        rows = read_score_rows(path)
        write_score_rows(tmp_path / "s.jsonl", rows)
        assert (tmp_path / "s.jsonl").read_text() == path.read_text(), path
    anchors = {p.parent.parent.name for p in records if MetricRecord.from_disk(p).is_anchor}
    assert anchors == {ANCHOR_RUN}


def _record(**changes) -> dict:
    data = json.loads((RUNS / ANCHOR_RUN / "records" / "dnsmos.json").read_text())
    data.update(changes)
    return data


def test_the_headline_of_older_records_is_resolved_into_the_field():
    assert MetricRecord.from_dict(_record()).headline == "ovrl"  # the record says
    data = _record()
    del data["headline"]
    data["outputs"]["sig"]["headline"] = True  # an output flagged as the headline
    assert MetricRecord.from_dict(data).headline == "sig"
    del data["outputs"]["sig"]["headline"]
    data["outputs"]["dnsmos"] = data["outputs"].pop("bak")  # an output named like the metric
    assert MetricRecord.from_dict(data).headline == "dnsmos"
    data["outputs"]["bak"] = data["outputs"].pop("dnsmos")
    data["headline"] = "no_such_output"  # else the first output
    record = MetricRecord.from_dict(data)
    assert record.headline == next(iter(data["outputs"]))
    assert record.to_dict()["headline"] == record.headline  # written back as a field
    assert record.output_order("sig")[0] == "sig"  # a caller's choice still wins
    assert record.output_order("nope")[0] == record.headline


def test_records_that_do_not_say_anchor_take_the_suites_anchor_method(tmp_path):
    suite = tmp_path / "quick"
    shutil.copytree(FIXTURE / "quick", suite)
    for path in suite.glob("runs/*/records/*.json"):
        data = json.loads(path.read_text())
        del data["is_anchor"]
        path.write_text(json.dumps(data))
    assert MetricRecord.from_dict(_record(is_anchor=None)).anchor("zero_shot") is True
    assert MetricRecord.from_dict(_record(is_anchor=None)).anchor("lora") is False
    assert MetricRecord.from_dict(_record(is_anchor=False)).anchor("zero_shot") is False
    loaded = load_results(suite)
    assert set(loaded.records.loc[loaded.records["is_anchor"], "run_id"]) == {ANCHOR_RUN}
    csv = build_leaderboard(tmp_path, "quick", audio="none")["csv"]
    expected = pd.read_csv(FIXTURE / "expected_leaderboard.csv")
    got = pd.read_csv(csv)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-9)


def test_not_applicable_is_a_field_read_from_version_1_errors():
    old = ScoreRow.from_dict(
        {"item": "u1", "values": {}, "error": "not applicable: no reference_audio: u1"}
    )
    assert old.not_applicable and "not_applicable" not in old.to_dict()  # the file is unchanged
    failed = ScoreRow.from_dict({"item": "u2", "values": {}, "error": "decode failed"})
    assert not failed.not_applicable and not failed.ok
    new = ScoreRow.from_dict(
        {"item": "u3", "values": {}, "error": "no reference", "not_applicable": True}
    )
    assert new.not_applicable and new.to_dict()["not_applicable"] is True


def test_the_loader_counts_not_applicable_rows_by_the_field(tmp_path):
    suite = tmp_path / "quick"
    shutil.copytree(FIXTURE / "quick", suite)
    path = suite / "runs" / ANCHOR_RUN / "scores" / "dnsmos.jsonl"
    rows = read_score_rows(path)
    rows[0] = ScoreRow(item=rows[0].item, error="no reference", not_applicable=True)
    rows[1] = ScoreRow(item=rows[1].item, error="not applicable: silent clip")  # version 1
    rows[2] = ScoreRow(item=rows[2].item, error="decode failed")
    write_score_rows(path, rows)
    scores = load_results(suite).scores[(ANCHOR_RUN, "dnsmos")]
    assert (scores.n_not_applicable, scores.n_failed) == (2, 1)


def test_unreadable_files_are_refused_naming_the_file_and_field(tmp_path):
    with pytest.raises(ResultsError, match=r"x\.json: missing field\(s\) run_id, metric_version"):
        MetricRecord.from_dict({"metric": "m", "outputs": {"a": {}}}, source=tmp_path / "x.json")
    with pytest.raises(ResultsError, match=r"outputs\.ovrl\.mean: .*valid number.*'high'"):
        MetricRecord.from_dict(
            _record(outputs={"ovrl": {"mean": "high"}}), source=tmp_path / "x.json"
        )
    with pytest.raises(ResultsError, match=r"schema 2, newer than this ttsadapt reads \(up to 1\)"):
        MetricRecord.from_dict(_record(schema=2))
    (tmp_path / "torn.json").write_text("{not json")
    with pytest.raises(ResultsError, match=r"torn\.json: not valid JSON"):
        RunSummary.from_disk(tmp_path / "torn.json")
    (tmp_path / "s.jsonl").write_text(
        '{"item": "a", "values": {}}\n{"values": {}}\n{"item": "c"}\n'
    )
    with pytest.raises(ResultsError, match=r"s\.jsonl:2: missing field\(s\) item"):
        read_score_rows(tmp_path / "s.jsonl")


def test_a_record_of_a_newer_schema_is_listed_not_loaded(tmp_path):
    suite = tmp_path / "quick"
    shutil.copytree(FIXTURE / "quick", suite)
    path = suite / "runs" / ANCHOR_RUN / "records" / "cer.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema": 2}))
    loaded = load_results(suite)
    [bad] = loaded.failed_records
    assert (bad.run_id, bad.metric, bad.status) == (ANCHOR_RUN, "cer", "bad record")
    assert "cer.json: metric record of schema 2, newer than this ttsadapt reads" in bad.error
    assert (ANCHOR_RUN, "dnsmos") in loaded.scores


def test_a_failed_run_summary_gives_its_first_error_line():
    summary = RunSummary.from_dict({"status": "failed", "error": "\nCUDA out of memory\nmore"})
    assert summary.failed and summary.first_error_line() == "CUDA out of memory"
    assert RunSummary.from_dict({"status": "failed"}).first_error_line() == (
        "failed (run.json gives no error)"
    )


def test_a_record_built_in_code_is_written_with_its_schema(tmp_path):
    record = MetricRecord(
        run_id="r", metric="m", metric_version="1", outputs={"m": {"mean": 0.5, "n": 3}}
    )
    record.to_disk(tmp_path / "m.json")
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["schema"] == 1 and data["headline"] == "m" and data["outputs"]["m"]["mean"] == 0.5
    assert MetricRecord.from_disk(tmp_path / "m.json") == record


def test_which_records_count_in_the_mean_rank_is_a_field(tmp_path):
    latency = MetricRecord.from_disk(RUNS / ANCHOR_RUN / "records" / "latency.json")
    assert latency.in_mean_rank is None and not latency.ranked()  # version 1: by the runner's name
    assert MetricRecord.from_dict(_record()).ranked()
    assert not MetricRecord.from_dict(_record(in_mean_rank=False)).ranked()
    suite = tmp_path / "quick"
    shutil.copytree(FIXTURE / "quick", suite)
    for path in suite.glob("runs/*/records/wada_snr.json"):  # a record that says: not ranked
        path.write_text(json.dumps({**json.loads(path.read_text()), "in_mean_rank": False}))
    summary = summarise(load_results(suite), n_resamples=200)
    head = summary.table[summary.table["is_headline"]]
    ranked = head[head["metric"].isin(["cer", "dnsmos", "speaker_similarity"])]
    expected = ranked.groupby("system")["rank"].mean()
    got = summary.systems.set_index("system")["mean_rank"]
    pd.testing.assert_series_equal(got.loc[expected.index], expected, check_names=False)
