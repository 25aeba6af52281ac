"""Data cards and the `ttsadapt data` command group."""

import argparse
import json
from pathlib import Path

import pytest

from ttsadapt.data.cards import DnsmosSample, adaptation_risk, inspect_manifest
from ttsadapt.data.cli import add_data_cli
from ttsadapt.types import Clip


def _parser():
    parser = argparse.ArgumentParser(prog="ttsadapt")
    add_data_cli(parser.add_subparsers(dest="command"))
    return parser


def _run(*argv):
    args = _parser().parse_args(list(argv))
    return args.func(args)


def test_risk_thresholds():
    assert adaptation_risk(14.0) == "low"
    assert adaptation_risk(13.0) == "low"
    assert adaptation_risk(11.5) == "medium"
    assert adaptation_risk(9.9) == "high"
    assert adaptation_risk(None) is None


def test_card_columns_units_and_files(small_corpus, tmp_path):
    out = tmp_path / "card.json"
    card = inspect_manifest(small_corpus, out, with_dnsmos=False, with_wada=False)
    assert out.is_file() and out.with_suffix(".md").is_file() and out.with_suffix(".png").is_file()
    saved = json.loads(out.read_text())
    row = saved["speakers"]["varied"]
    for key in (
        "hours",
        "clips",
        "duration_mean_s",
        "duration_std_s",
        "unique_words",
        "words_per_clip_mean",
        "energy_mean_db",
        "energy_std_db",
        "dnsmos_ovrl_mean",
        "dnsmos_ovrl_std",
        "dnsmos_clips",
        "wada_snr_mean_db",
        "adaptation_risk",
    ):
        assert key in row
    assert row["clips"] == 13 and row["unique_words"] > 30
    assert (
        saved["speakers"]["varied"]["energy_std_db"] > saved["speakers"]["steady"]["energy_std_db"]
    )
    assert saved["speakers"]["steady"]["adaptation_risk"] in ("high", "medium")
    assert set(saved["languages"]) == {"en"}
    assert "energy std dB" in out.with_suffix(".md").read_text()
    assert card["quarantine"]["count"] == 0


@pytest.mark.slow
def test_card_with_dnsmos_and_wada(small_corpus, tmp_path):
    from ttsadapt.registry import build_registry

    base = build_registry(autoload=False)
    extra = [
        m
        for m, n in (
            ("ttsadapt.plugins.metrics.dnsmos", "dnsmos"),
            ("ttsadapt.plugins.metrics.wada_snr", "wada_snr"),
        )
        if n not in base.names("metric")
    ]
    registry = build_registry(autoload=False, extra_modules=extra)
    card = inspect_manifest(
        small_corpus,
        tmp_path / "c.json",
        registry=registry,
        dnsmos_sample=DnsmosSample(max_clips=4),
    )
    for row in card["speakers"].values():
        assert 1.0 <= row["dnsmos_ovrl_mean"] <= 5.0
        assert row["wada_snr_mean_db"] is not None
        assert row["dnsmos_clips"] == 4 and row["clips"] == 13
    assert card["overall"]["dnsmos_clips"] == 8
    assert card["dnsmos_sample"]["clips_scored"] == 8
    assert card["dnsmos_sample"]["clips_total"] == 26
    assert "DNS-MOS columns: 8 of 26 clips" in (tmp_path / "c.md").read_text()
    # the noisy steady speaker (15 dB pink noise) scores a lower WADA-SNR than the clean one
    assert (
        card["speakers"]["steady"]["wada_snr_mean_db"]
        < card["speakers"]["varied"]["wada_snr_mean_db"]
    )


def _sample_clips(n_speakers=3, n=20, seconds=6.0):
    clips = [
        Clip(f"s{s}-{i}", Path(f"/x/{s}-{i}.wav"), "a b", f"s{s}", "en", seconds)
        for s in range(n_speakers)
        for i in range(n)
    ]
    return clips, {c.id: seconds for c in clips}


def test_dnsmos_sample_is_per_speaker_capped_and_deterministic():
    clips, durations = _sample_clips()
    chosen = DnsmosSample(max_clips=5, max_minutes=60).select(clips, durations)
    per_speaker = {s: sum(c.startswith(s + "-") for c in chosen) for s in ("s0", "s1", "s2")}
    assert per_speaker == {"s0": 5, "s1": 5, "s2": 5}
    # independent of manifest order; stable when other clips are added
    shuffled = list(reversed(clips))
    assert DnsmosSample(max_clips=5, max_minutes=60).select(shuffled, durations) == chosen
    more, more_d = _sample_clips(n_speakers=4)
    assert {
        c for c in DnsmosSample(max_clips=5).select(more, more_d) if not c.startswith("s3")
    } == (chosen)
    # a different seed picks other clips; the minutes cap stops a speaker early (>= 1 clip)
    assert DnsmosSample(max_clips=5, max_minutes=60, seed=1).select(clips, durations) != chosen
    assert len(DnsmosSample(max_clips=50, max_minutes=0.25).select(clips, durations)) == 3 * 3
    assert len(DnsmosSample(max_clips=50, max_minutes=0.01).select(clips, durations)) == 3
    assert len(DnsmosSample(all_clips=True).select(clips, durations)) == 60
    # unreadable clips (no duration) are never chosen
    del durations["s0-0"]
    assert "s0-0" not in DnsmosSample(all_clips=True).select(clips, durations)


def test_cli_dnsmos_sample_and_all(tmp_path, make_wav):
    lines = []
    for i in range(3):
        make_wav(f"w{i}.wav", seconds=2.0, seed=i)
        lines.append(
            json.dumps({"audio": f"w{i}.wav", "text": "hi", "speaker": "s", "language": "en"})
        )
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    args = ["data", "inspect", "--manifest", str(tmp_path / "m.jsonl"), "--no-wada"]
    assert _run(*args, "--dnsmos-clips", "1", "--out", str(tmp_path / "a.json")) == 0
    sampled = json.loads((tmp_path / "a.json").read_text())
    assert sampled["speakers"]["s"]["dnsmos_clips"] == 1
    assert sampled["speakers"]["s"]["clips"] == 3
    assert sampled["dnsmos_sample"]["mode"] == "sample"
    assert _run(*args, "--dnsmos-all", "--out", str(tmp_path / "b.json")) == 0
    full = json.loads((tmp_path / "b.json").read_text())
    assert full["speakers"]["s"]["dnsmos_clips"] == 3
    assert full["dnsmos_sample"]["mode"] == "all"
    assert 1.0 <= full["speakers"]["s"]["dnsmos_ovrl_mean"] <= 5.0
    assert "wada_snr not computed" in " ".join(full["notes"])
    with pytest.raises(SystemExit):
        _parser().parse_args([*args, "--dnsmos-clips", "0"])


def test_cli_exit_codes(tmp_path, small_corpus, make_wav):
    assert _run("data", "validate", "--manifest", str(small_corpus)) == 0
    assert _run("data", "validate", "--manifest", str(tmp_path / "missing.jsonl")) == 4
    make_wav("x.wav")
    (tmp_path / "m.jsonl").write_text(
        '{"audio": "x.wav", "text": "hi", "speaker": "s", "language": "en"}\n{bad json\n'
    )
    q = tmp_path / "q.jsonl"
    assert (
        _run("data", "validate", "--manifest", str(tmp_path / "m.jsonl"), "--quarantine", str(q))
        == 4  # a data error: lines were set aside
    )
    assert json.loads(q.read_text())["line"] == 2
    assert (
        _run(
            "data",
            "inspect",
            "--manifest",
            str(tmp_path / "m.jsonl"),
            "--no-dnsmos",
            "--no-wada",
            "--out",
            str(tmp_path / "c.json"),
        )
        == 0
    )
    bad_spec = tmp_path / "spec.json"
    bad_spec.write_text('{"n_train": 0}')
    assert _run("data", "build", "--spec", str(bad_spec), "--cache-dir", str(tmp_path)) == 2
    with pytest.raises(SystemExit):
        _parser().parse_args(["data", "inspect", "--help"])


def test_import_hf_local_folder(tmp_path, speechlike):
    datasets = pytest.importorskip("datasets")
    import io

    import soundfile as sf

    rows = {"audio": [], "text": [], "spk": []}
    for i in range(3):
        buf = io.BytesIO()
        sf.write(buf, speechlike(1.0, 22050, seed=i), 22050, format="FLAC")
        rows["audio"].append({"bytes": buf.getvalue(), "path": None})
        rows["text"].append("" if i == 2 else f"sentence {i}")
        rows["spk"].append(f"p{i % 2}")
    ds = datasets.Dataset.from_dict(rows).cast_column("audio", datasets.Audio(decode=False))
    ds.save_to_disk(str(tmp_path / "ds"))
    code = _run(
        "data",
        "import-hf",
        "--dataset",
        str(tmp_path / "ds"),
        "--out-dir",
        str(tmp_path / "out"),
        "--speaker-column",
        "spk",
    )
    assert code == 0
    from ttsadapt.data.manifest import load_manifest

    load = load_manifest(tmp_path / "out" / "manifest.jsonl")
    assert len(load.clips) == 2 and not load.quarantine
    assert {c.speaker for c in load.clips} == {"p0", "p1"}
    report = json.loads((tmp_path / "out" / "import_report.json").read_text())
    assert report["skipped"][0]["row"] == 2
