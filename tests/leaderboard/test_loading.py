"""The fast loader reads what the records format allows, odd files included, as a plain reader would."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from fake_results import make_results

import ttsadapt.leaderboard.jsonio as jsonio
from ttsadapt.leaderboard import build_leaderboard, load_results, summarise


def _small(tmp_path, **kw):
    kw = {"n_items": 12, "ranks": (8, 64), "recipes": ("natural",), "n_failed": 0, **kw}
    return make_results(tmp_path, **kw)


def _naive_scores(path, output):
    """Per-item values the way the records docstring defines them, one line at a time."""
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row, dict) or row.get("error"):
            out.append(math.nan)
            continue
        try:
            out.append(float((row.get("values") or {}).get(output)))
        except (TypeError, ValueError):
            out.append(math.nan)
    return np.array(out)


def test_same_results_with_and_without_orjson(tmp_path, monkeypatch):
    fake = _small(tmp_path)
    fast = load_results(fake.suite_dir)
    monkeypatch.setattr(jsonio, "_orjson", None)
    plain = load_results(fake.suite_dir)
    pd.testing.assert_frame_equal(fast.records, plain.records)
    assert fast.scores.keys() == plain.scores.keys()
    for key, sc in fast.scores.items():
        assert sc.items == plain.scores[key].items
        assert (sc.n_not_applicable, sc.n_failed) == (
            plain.scores[key].n_not_applicable,
            plain.scores[key].n_failed,
        )
        for name, values in sc.values.items():
            np.testing.assert_array_equal(values, plain.scores[key].values[name])


def test_non_finite_numbers_written_by_python_json_still_load(tmp_path):
    fake = _small(tmp_path)
    rec = fake.suite_dir / "runs" / fake.run_ids[0] / "records" / "cer.json"
    data = json.loads(rec.read_text())
    first = next(iter(data["outputs"]))
    data["outputs"][first]["range"] = [0.0, math.inf]  # json.dumps writes Infinity
    data["outputs"][first]["ci_low"] = math.nan  # and NaN
    rec.write_text(json.dumps(data))
    loaded = load_results(fake.suite_dir)
    row = loaded.records[
        (loaded.records["run_id"] == fake.run_ids[0]) & (loaded.records["output"] == first)
    ].iloc[0]
    assert row["range_high"] == math.inf and math.isnan(row["record_ci_low"])
    assert not loaded.failed_records


def test_odd_score_rows_become_nan_or_failed_items(tmp_path):
    fake = _small(tmp_path)
    path = fake.suite_dir / "runs" / fake.run_ids[0] / "scores" / "dnsmos.jsonl"
    lines = path.read_text().splitlines()
    row = json.loads(lines[1])
    row["values"]["ovrl"] = "not a number"
    lines[1] = json.dumps(row)
    row = json.loads(lines[2])
    row["values"]["ovrl"] = None
    lines[2] = json.dumps(row)
    row = json.loads(lines[3])
    del row["error"]  # older writers left it out when there was none
    lines[3] = json.dumps(row)
    lines.insert(5, "")  # a blank line inside the file
    lines.insert(7, "[1, 2]")  # not an object: a failed item
    path.write_text("\r\n".join(lines) + "\r\n")
    loaded = load_results(fake.suite_dir, headlines={"dnsmos": "ovrl"})
    sc = loaded.scores[(fake.run_ids[0], "dnsmos")]
    np.testing.assert_array_equal(sc.values["ovrl"], _naive_scores(path, "ovrl"))
    assert len(sc.items) == len(lines) - 1
    assert sc.items[6] == "None"  # the list row has no item id
    assert sc.n_failed >= 1


def test_missing_outputs_in_some_rows_are_nan(tmp_path):
    fake = _small(tmp_path)
    path = fake.suite_dir / "runs" / fake.run_ids[1] / "scores" / "cer.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    for r in rows[::3]:
        r["values"].pop("wer", None)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sc = load_results(fake.suite_dir).scores[(fake.run_ids[1], "cer")]
    np.testing.assert_array_equal(sc.values["wer"], _naive_scores(path, "wer"))
    np.testing.assert_array_equal(sc.values["cer"], _naive_scores(path, "cer"))


def test_record_that_is_not_an_object_is_listed(tmp_path):
    fake = _small(tmp_path)
    rec = fake.suite_dir / "runs" / fake.run_ids[0] / "records" / "dnsmos.json"
    rec.write_text("[1, 2, 3]")
    loaded = load_results(fake.suite_dir)
    assert any(
        "dnsmos.json" in f.error and "expected a JSON object" in f.error
        for f in loaded.failed_records
    )
    assert (fake.run_ids[0], "cer") in loaded.scores  # the run's other records still load


def _naive_pooled(loaded, system_runs, anchor_runs, metric, output):
    """Pooled values and paired differences by item id and seed, one output at a time."""
    anchor = {}
    for rid, seed in anchor_runs:
        sc = loaded.scores[(rid, metric)]
        anchor[seed] = dict(zip(reversed(sc.items), reversed(sc.values[output])))
    items = {i for by_item in anchor.values() for i in by_item}
    mean = {}
    for i in items:
        seen = [a[i] for a in anchor.values() if np.isfinite(a.get(i, np.nan))]
        mean[i] = float(np.mean(seen)) if seen else np.nan
    values, diffs = [], []
    for rid, seed in system_runs:
        sc = loaded.scores[(rid, metric)]
        ref = anchor.get(seed, mean)
        for item, v in zip(sc.items, sc.values[output]):
            values.append(v)
            diffs.append(v - ref.get(item, np.nan))
    values, diffs = np.array(values), np.array(diffs)
    return values[np.isfinite(values)], diffs[np.isfinite(diffs)]


def test_vectorised_pairing_equals_item_by_item_pairing(tmp_path):
    fake = _small(tmp_path, seeds=(0, 1, 2))
    runs = fake.suite_dir / "runs"
    # the anchor lacks seed 2 (so its per-item mean over seeds is used) ...
    for rid in [r for r in fake.anchor_run_ids if r.endswith("-2")]:
        (runs / rid / "DONE").unlink()
    loaded = load_results(fake.suite_dir)
    summary = summarise(loaded, n_resamples=200)
    recs = loaded.records.drop_duplicates("run_id")
    runs_of = {s: list(zip(g["run_id"], g["seed"])) for s, g in recs.groupby("system")}
    anchor = recs[recs["is_anchor"]]["system"].iloc[0]
    for row in summary.table[~summary.table["is_anchor"]].itertuples():
        values, diffs = _naive_pooled(
            loaded, runs_of[row.system], runs_of[anchor], row.metric, row.output
        )
        assert row.n == values.size and row.n_pairs == diffs.size
        assert row.mean == pytest.approx(values.mean(), rel=1e-12)
        assert row.delta == pytest.approx(diffs.mean(), rel=1e-12)


def test_html_is_byte_identical_across_builds(tmp_path):
    _small(tmp_path)
    first = build_leaderboard(tmp_path, "demo", n_resamples=200)["html"].read_bytes()
    second = build_leaderboard(tmp_path, "demo", n_resamples=200)["html"].read_bytes()
    assert first == second
