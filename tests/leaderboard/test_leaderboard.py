"""The leaderboard built from a synthetic results folder in the records format."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from fake_results import make_results
from scipy import stats as scipy_stats

from ttsadapt.errors import ConfigError, TTSAdaptError
from ttsadapt.leaderboard import build_leaderboard, list_suites, load_results

HEADLINES = {"dnsmos": "ovrl", "speaker_sim": "sim", "wada_snr": "snr_db"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    fake = make_results(root, suite="demo", n_items=40, seeds=(0, 1))
    paths = build_leaderboard(root, "demo", headlines=HEADLINES, n_resamples=1000)
    return fake, paths


@pytest.fixture(scope="module")
def csv(built):
    return pd.read_csv(built[1]["csv"])


def _scores(fake, run_id, metric, output):
    rows = [
        json.loads(x)
        for x in (fake.suite_dir / "runs" / run_id / "scores" / f"{metric}.jsonl")
        .read_text()
        .splitlines()
    ]
    return {r["item"]: r["values"].get(output, np.nan) if not r["error"] else np.nan for r in rows}


def test_files_written_next_to_runs(built):
    fake, paths = built
    assert set(paths) == {"md", "csv", "html"}
    for kind, path in paths.items():
        assert path == fake.suite_dir / f"leaderboard.{kind}"
        assert path.stat().st_size > 500


def test_markdown_has_anchor_arrows_deltas_stars_and_ranks(built):
    md = built[1]["md"].read_text()
    assert "(anchor)" in md
    assert "dnsmos.ovrl ↑" in md and "cer.cer ↓" in md
    assert "***" in md
    lines = [
        ln for ln in md.splitlines() if ln.startswith("| voxcpm2-tiny / lora (alpha=128, rank=64")
    ]
    assert lines, md
    # the best system in the fixture is rank 64 on upsampled data: rank 1 on DNS-MOS
    best = next(ln for ln in lines if "upsampled" in ln)
    cells = [c.strip() for c in best.strip("|").split("|")]
    header = [c.strip() for c in md.splitlines()[4].strip("|").split("|")]
    assert cells[header.index("# dnsmos")] == "1"
    assert cells[header.index("Δ dnsmos")].startswith("+") and cells[
        header.index("Δ dnsmos")
    ].endswith("***")


def test_failed_and_unfinished_runs_are_listed(built):
    fake, paths = built
    md = paths["md"].read_text()
    assert "## Failed runs" in md
    for run_id in fake.failed_run_ids + fake.unfinished_run_ids:
        assert run_id in md
    assert "CUDA out of memory while training lora rank 128" in md
    assert "Traceback" not in md  # first line only


def test_csv_is_long_and_complete(built, csv):
    fake = built[0]
    pooled = csv[csv["scope"] == "pooled"]
    n_systems = len(fake.systems)
    assert pooled["system"].nunique() == n_systems
    # every output of every metric (2 outputs each in this fixture)
    assert len(pooled) == n_systems * 4 * 2
    assert set(pooled["output"]) >= {"ovrl", "sig", "cer", "wer", "sim", "snr_db"}
    seeds = csv[csv["scope"] == "seed"]
    assert seeds["run_id"].nunique() == len(fake.run_ids)
    assert pooled[pooled["is_headline"]]["output"].isin(["ovrl", "cer", "sim", "snr_db"]).all()


def test_pooled_mean_and_wilcoxon_recomputed_independently(built, csv):
    fake = built[0]
    row = csv[
        (csv["scope"] == "pooled")
        & (csv["metric"] == "dnsmos")
        & (csv["output"] == "ovrl")
        & csv["system"].str.contains("rank=64")
        & csv["system"].str.contains("upsampled")
    ]
    assert len(row) == 1
    row = row.iloc[0]
    runs = [r for r in fake.run_ids if "lora-" in r]
    sys_runs = sorted(
        pd.read_csv(built[1]["csv"]).query(
            "scope == 'seed' and system == @row.system and metric == 'dnsmos' and output == 'ovrl'"
        )["run_id"]
    )
    assert sys_runs and set(sys_runs) <= set(runs)
    anchors = {int(r.rsplit("-", 1)[1]): r for r in fake.anchor_run_ids}
    values, a_vals, b_vals = [], [], []
    per_item: dict[str, list[float]] = {}  # item -> its paired differences, one per seed
    for rid in sys_runs:
        seed = int(rid.rsplit("-", 1)[1])
        s = _scores(fake, rid, "dnsmos", "ovrl")
        a = _scores(fake, anchors[seed], "dnsmos", "ovrl")
        values += [v for v in s.values() if np.isfinite(v)]
        for item, v in s.items():
            if np.isfinite(v) and np.isfinite(a.get(item, np.nan)):
                b_vals.append(v)
                a_vals.append(a[item])
                per_item.setdefault(item, []).append(v - a[item])
    assert row["mean"] == pytest.approx(np.mean(values))
    assert row["n"] == len(values)
    assert row["delta"] == pytest.approx(np.mean(np.array(b_vals) - np.array(a_vals)))
    assert row["n_pairs"] == len(a_vals)
    # the test pairs utterances, not utterance x seed rows: one mean difference per item
    assert row["n_paired_items"] == len(per_item) < len(a_vals)
    item_means = [np.mean(d) for d in per_item.values()]
    assert row["p_value_raw"] == pytest.approx(scipy_stats.wilcoxon(item_means).pvalue, rel=1e-9)
    assert row["p_value_holm"] >= row["p_value_raw"]
    assert row["ci_low"] < row["mean"] < row["ci_high"]
    assert row["delta_ci_low"] < row["delta"] < row["delta_ci_high"]
    assert row["rank"] == 1
    assert row["trainable_share_pct"] == pytest.approx(100 * 36_170_000 / 2_290_000_000)


def test_anchor_rows_have_no_delta_and_parameters_are_zero(csv):
    anchor = csv[(csv["scope"] == "pooled") & csv["is_anchor"]]
    assert len(anchor) and anchor["delta"].isna().all()
    assert (anchor["trainable_share_pct"] == 0).all()


def test_not_applicable_items_counted_apart_from_failures(csv):
    pooled = csv[(csv["scope"] == "pooled") & csv["is_headline"]]
    sim = pooled[pooled["metric"] == "speaker_sim"]
    assert (sim["n_not_applicable"] > 0).all()
    assert (pooled[pooled["metric"] == "dnsmos"]["n_not_applicable"] == 0).all()
    assert (pooled["n_item_errors"] > 0).any()


def test_lowest_loss_is_not_best_quality_in_csv(csv):
    pooled = csv[
        (csv["scope"] == "pooled")
        & (csv["output"] == "ovrl")
        & csv["system"].str.contains("lora")
        & csv["system"].str.contains("upsampled")
    ]
    by_loss = pooled.sort_values("selected_val_loss").iloc[0]["system"]
    by_quality = pooled.sort_values("mean", ascending=False).iloc[0]["system"]
    assert "rank=128" in by_loss and "rank=64" in by_quality


def test_mixed_metric_versions_are_refused(tmp_path):
    fake = make_results(tmp_path, n_items=10, ranks=(8,), recipes=("natural",), n_checkpoints=0)
    rec = fake.suite_dir / "runs" / fake.run_ids[-1] / "records" / "cer.json"
    data = json.loads(rec.read_text())
    data["metric_version"] = "2"
    rec.write_text(json.dumps(data))
    with pytest.raises(TTSAdaptError) as err:
        build_leaderboard(tmp_path, "demo")
    msg = str(err.value)
    assert "'cer'" in msg and "1, 2" in msg and fake.run_ids[-1] in msg


def test_no_finished_runs_is_a_clear_error(tmp_path):
    fake = make_results(tmp_path, n_items=5, ranks=(8,), recipes=("natural",), n_checkpoints=0)
    for run_id in fake.run_ids:
        (fake.suite_dir / "runs" / run_id / "DONE").unlink()
    with pytest.raises(TTSAdaptError, match="no finished runs"):
        build_leaderboard(tmp_path, "demo")
    with pytest.raises(TTSAdaptError, match="no such suite folder"):
        build_leaderboard(tmp_path, "nope")


def test_list_suites_and_bad_select(tmp_path):
    make_results(tmp_path, suite="b", n_items=5, ranks=(8,), recipes=("natural",))
    make_results(tmp_path, suite="a", n_items=5, ranks=(8,), recipes=("natural",))
    (tmp_path / "not_a_suite").mkdir()
    assert list_suites(tmp_path) == ["a", "b"]
    assert list_suites(tmp_path / "missing") == []
    with pytest.raises(ConfigError, match="select"):
        build_leaderboard(tmp_path, "a", select="loss")


def test_bad_record_and_torn_scores_do_not_sink_the_board(tmp_path):
    fake = make_results(tmp_path, n_items=12, ranks=(8, 64), recipes=("natural",), n_failed=0)
    run_dir = fake.suite_dir / "runs" / fake.run_ids[-1]
    (run_dir / "records" / "wada_snr.json").write_text("{not json")
    scores = run_dir / "scores" / "dnsmos.jsonl"
    scores.write_text(scores.read_text() + '{"item": "utt9999", "val')  # torn last line
    loaded = load_results(fake.suite_dir)
    assert any("wada_snr.json" in f.error for f in loaded.failed_records)
    assert (fake.run_ids[-1], "dnsmos") in loaded.scores
    paths = build_leaderboard(tmp_path, "demo")
    assert "wada_snr.json" in paths["md"].read_text()


def test_headline_field_in_record_is_honoured(tmp_path):
    fake = make_results(tmp_path, n_items=8, ranks=(8,), recipes=("natural",), n_checkpoints=0)
    for rec in fake.suite_dir.glob("runs/*/records/dnsmos.json"):
        data = json.loads(rec.read_text())
        data["headline"] = "sig"
        rec.write_text(json.dumps(data))
    loaded = load_results(fake.suite_dir)
    head = loaded.records[loaded.records["is_headline"] & (loaded.records["metric"] == "dnsmos")]
    assert set(head["output"]) == {"sig"}
    shutil.rmtree(tmp_path / "demo")


def test_select_dev_metric_shows_the_quality_best_checkpoint(tmp_path):
    make_results(tmp_path, n_items=8, ranks=(128,), recipes=("natural",), seeds=(0,), n_failed=0)
    by_loss = pd.read_csv(build_leaderboard(tmp_path, "demo")["csv"])
    by_dev = pd.read_csv(build_leaderboard(tmp_path, "demo", select="dev_metric")["csv"])
    lora = "system.str.contains('lora') and scope == 'pooled'"  # the one adapted system
    loss_a = by_loss.query(lora)["selected_val_loss"].iloc[0]
    loss_b = by_dev.query(lora)["selected_val_loss"].iloc[0]
    assert loss_b > loss_a  # the quality-best checkpoint is not the loss-best one
