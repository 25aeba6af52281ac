"""Listening tests without a browser: export, scripted raters' files, import, leaderboard."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from fake_results import add_audio, make_results
from scripted_raters import Rater, page_config, ratings_file, true_quality

from ttsadapt.errors import TTSAdaptError
from ttsadapt.leaderboard import build_leaderboard, load_results, summarise
from ttsadapt.listen import (
    export_test,
    import_ratings,
    krippendorff_alpha_interval,
)

QUALITY = [3.0, 3.9, 3.4, 2.6]  # anchor first, then the systems in label order


def _suite(root, n_items=8):
    fake = make_results(
        root,
        suite="demo",
        n_items=n_items,
        seeds=(0,),
        ranks=(8, 64),
        recipes=("natural",),
        full_finetune=True,
        n_failed=0,
        n_unfinished=0,
        metrics=("dnsmos", "cer"),
    )
    return fake, add_audio(fake, seconds=0.5)


RATERS = [
    Rater("r1", seed=1),
    Rater("r2", seed=2, bias=0.3),
    Rater("r3", seed=3, sd=0.6),
    Rater("r4", seed=4, careless=True),
]


def _rate(root, ex, raters=RATERS):
    key = json.loads(ex.key_path.read_text())
    config = page_config(ex.out_dir)
    truth = true_quality(key, dict(zip(ex.systems, QUALITY)))
    return [
        ratings_file(root / "ratings" / f"{r.code}.json", r, config, key, truth) for r in raters
    ], key


@pytest.mark.parametrize("missing", [0.0, 0.3])
def test_alpha_matches_the_krippendorff_package(missing):
    kd = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(7)
    for trial in range(5):
        truth = rng.normal(3, 1, 30)
        data = truth + rng.normal(0, 0.5 + trial * 0.3, (6, 30))
        data = np.round(np.clip(data, 1, 5))
        data[rng.random(data.shape) < missing] = np.nan
        ours = krippendorff_alpha_interval(data)
        ref = kd.alpha(reliability_data=data, level_of_measurement="interval")
        assert ours == pytest.approx(ref, abs=1e-10)
    # perfect agreement is 1; units rated by one rater only are not pairable
    assert krippendorff_alpha_interval(np.array([[1, 2, 3], [1, 2, 3.0]])) == 1.0
    assert math.isnan(krippendorff_alpha_interval(np.array([[1, np.nan], [np.nan, 2.0]])))


def test_export_is_blinded_randomised_and_anchored(tmp_path):
    _, manifest = _suite(tmp_path)
    ex = export_test(
        tmp_path, "demo", tmp_path / "test", n_items=6, n_raters=3, manifest=manifest, seed=3
    )
    assert len(ex.systems) == 4 and len(ex.items) == 6 and ex.has_upper_anchor
    page = (ex.out_dir / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # opens offline
    for label in ex.systems:  # blinded: no system or run name reaches the rater
        assert label not in page
    assert "zero_shot" not in page and "lora" not in page
    key = json.loads(ex.key_path.read_text())
    roles = [m["role"] for m in key["stimuli"].values()]
    assert roles.count("system") == 24 and roles.count("upper") == 6 and roles.count("low") == 6
    assert roles.count("check") == 2
    files = sorted(p.stem for p in (ex.out_dir / "audio").glob("*.ogg"))
    assert files == sorted(key["stimuli"])
    config = page_config(ex.out_dir)
    orders = [[t["id"] for t in config["raters"][r]] for r in ("r1", "r2", "r3")]
    assert sorted(orders[0]) == sorted(orders[1]) and orders[0] != orders[1]
    assert len(orders[0]) == 24 + 12 + 2
    assert all(not config["raters"][r][0].get("check") for r in config["raters"])
    checks = [t for t in config["raters"]["r1"] if t.get("check")]
    assert [re.search(r"choose (\d)", t["check"]["text"]).group(1) for t in checks] == [
        str(t["check"]["answer"]) for t in checks
    ]
    # the low anchor is degraded: its level above 4 kHz is far below the recording's
    import soundfile as sf

    low = next(t for t, m in key["stimuli"].items() if m["role"] == "low")
    up = next(
        t
        for t, m in key["stimuli"].items()
        if m["role"] == "upper" and m["item"] == key["stimuli"][low]["item"]
    )
    a_low, _sr = sf.read(ex.out_dir / "audio" / f"{low}.ogg")
    a_up, _ = sf.read(ex.out_dir / "audio" / f"{up}.ogg")
    assert not np.allclose(a_low[: len(a_up)], a_up[: len(a_low)], atol=1e-2)


def test_import_screens_raters_and_writes_records_the_leaderboard_reads(tmp_path):
    _, manifest = _suite(tmp_path)
    ex = export_test(tmp_path, "demo", tmp_path / "test", n_items=8, manifest=manifest, seed=5)
    files, _key = _rate(tmp_path, ex)
    res = import_ratings(files, tmp_path, "demo", n_boot=500)
    excluded = {r.rater: r.reasons for r in res.raters if r.excluded}
    assert list(excluded) == ["r4"] and "low anchor" in excluded["r4"][0]
    assert res.n_kept == 3
    assert res.anchors["upper"] > 4 and res.anchors["low"] < 2
    assert 0.2 < res.alpha < 1 and 0.2 < res.alpha_all < 1  # systems only: anchors left out
    means = [res.systems[label]["mean"] for label in ex.systems]
    assert np.argsort(means).tolist() == np.argsort(QUALITY).tolist()
    for s in res.systems.values():
        assert s["ci_low"] < s["mean"] < s["ci_high"] and s["n_items"] == 8
    # records in the format every metric uses, loaded like any metric
    loaded = load_results(tmp_path / "demo")
    mos = loaded.records[loaded.records["metric"] == "mos"]
    assert len(mos) == 4 and set(mos["output"]) == {"mos"}
    summary = summarise(loaded, n_resamples=300)
    assert summary.human["mos"]["n_raters"] == 3 and summary.human["mos"]["n_excluded"] == 1
    row = summary.table[(summary.table["metric"] == "mos") & ~summary.table["is_anchor"]]
    assert row["n_paired_items"].tolist() == [8, 8, 8]
    assert np.isfinite(row["p_value_raw"]).all()
    paths = build_leaderboard(tmp_path, "demo", n_resamples=300, manifest=manifest)
    md = paths["md"].read_text()
    assert "mos.mos ↑ (human, 3 raters)" in md and "Listening tests" in md
    assert "How people and the automatic metrics rank the systems" in md
    html = paths["html"].read_text()
    assert "human, 3 raters" in html and "Spearman" in html
    # the evidence is kept beside the key
    assert sorted(p.name for p in (ex.key_path.parent / "ratings").iterdir()) == [
        "r1.json",
        "r2.json",
        "r3.json",
        "r4.json",
    ]


@pytest.mark.parametrize("kind", ["ab", "mushra"])
def test_ab_and_mushra(tmp_path, kind):
    _, manifest = _suite(tmp_path, n_items=6)
    ex = export_test(
        tmp_path, "demo", tmp_path / "t", n_items=6, kind=kind, manifest=manifest, seed=2
    )
    files, _key = _rate(tmp_path, ex)
    res = import_ratings(files, tmp_path, "demo", n_boot=300)
    assert [r.rater for r in res.raters if r.excluded] == ["r4"]
    means = {label: res.systems[label]["mean"] for label in ex.systems}
    best = ex.systems[int(np.argmax(QUALITY))]
    worst = ex.systems[int(np.argmin(QUALITY))]
    assert means[best] > means[worst]
    if kind == "ab":  # preference against the anchor: the anchor is 0 by definition
        assert means[ex.systems[0]] == 0 and means[best] > 0.3 and means[worst] < -0.3
    else:
        assert res.anchors["upper"] > 85 and res.anchors["low"] < 20


def test_import_errors_name_the_file_and_field(tmp_path):
    _, manifest = _suite(tmp_path, n_items=4)
    ex = export_test(tmp_path, "demo", tmp_path / "t", n_items=4, manifest=manifest, seed=1)
    files, _ = _rate(tmp_path, ex, RATERS[:1])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(TTSAdaptError, match=r"bad.json: field format"):
        import_ratings([bad], tmp_path, "demo")
    data = json.loads(files[0].read_text())
    data["answers"][0]["ratings"] = {data["answers"][0]["order"][0]: 7}
    files[0].write_text(json.dumps(data))
    with pytest.raises(TTSAdaptError, match=r"r1.json: answers\[0\]\.ratings\..*\[1, 5\]"):
        import_ratings(files, tmp_path, "demo")
    data["test_id"] = "demo-mos-00000000"
    files[0].write_text(json.dumps(data))
    with pytest.raises(TTSAdaptError, match="no key for test 'demo-mos-00000000'"):
        import_ratings(files, tmp_path, "demo")
