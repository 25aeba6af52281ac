"""The full audio check every run applies and the data commands default to: what it sets aside,
how it names each line, and its per-file cache."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from ttsadapt.data.cards import inspect_manifest
from ttsadapt.data.cli import add_data_cli
from ttsadapt.data.manifest import (
    AUDIO_CHECK_CACHE_FILE,
    DEFAULT_MIN_DURATION_S,
    RUN_CHECKS,
    AudioCheckCache,
    check_clips,
    load_manifest,
)
from ttsadapt.paths import cache_root
from ttsadapt.types import Clip


def _line(audio, cid, **kw):
    return {
        "id": cid,
        "audio": audio,
        "text": "hello there",
        "speaker": "s",
        "language": "en",
        **kw,
    }


@pytest.fixture
def broken(tmp_path, make_wav, speechlike):
    """Five usable clips and one of each problem a header check cannot see (lines 3, 5, 6, 8)."""
    for i in range(5):
        make_wav(f"wavs/ok{i}.wav", seconds=1.0 + 0.1 * i, seed=i)
    nan = speechlike(1.0)
    nan[4000:4100] = np.nan
    sf.write(tmp_path / "wavs/nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(tmp_path / "wavs/blip40.wav", speechlike(0.04), 16000, subtype="PCM_16")
    sf.write(tmp_path / "wavs/blip50.wav", speechlike(0.05), 16000, subtype="PCM_16")
    hum = 1e-4 * np.sin(2 * np.pi * 50 * np.arange(16000) / 16000)  # -80 dBFS: no speech
    sf.write(tmp_path / "wavs/quiet.wav", hum.astype(np.float32), 16000, subtype="FLOAT")
    lines = [
        _line("wavs/ok0.wav", "ok0"),
        _line("wavs/ok1.wav", "ok1"),
        _line("wavs/nan.wav", "nan"),  # 3
        _line("wavs/ok2.wav", "ok2"),
        _line("wavs/blip40.wav", "blip40"),  # 5
        _line("wavs/blip50.wav", "blip50"),  # 6
        _line("wavs/ok3.wav", "ok3"),
        _line("wavs/quiet.wav", "quiet"),  # 8
        _line("wavs/ok4.wav", "ok4"),
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


EXPECTED = {
    3: ("nan", "nan_inf"),
    5: ("blip40", "duration_out_of_window"),
    6: ("blip50", "duration_out_of_window"),
    8: ("quiet", "silent"),
}


def _run(*argv):
    import argparse

    parser = argparse.ArgumentParser(prog="ttsadapt")
    add_data_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_run_checks_set_aside_nan_short_and_silent_clips(broken):
    load = load_manifest(broken, **RUN_CHECKS)
    assert {q.line: (q.id, q.code) for q in load.quarantine} == EXPECTED
    assert [c.id for c in load.clips] == ["ok0", "ok1", "ok2", "ok3", "ok4"]
    short = next(q for q in load.quarantine if q.id == "blip40")
    assert "too short: 0.040 s" in short.reason and f"{DEFAULT_MIN_DURATION_S:g} s" in short.reason
    quiet = next(q for q in load.quarantine if q.id == "quiet")
    assert "-80.0 dBFS" in quiet.reason
    nan = next(q for q in load.quarantine if q.id == "nan")
    assert "100 of 16000 samples are NaN" in nan.reason and nan.path.endswith("nan.wav")


def test_validate_defaults_name_every_broken_line_and_fail(broken, capsys):
    assert _run("data", "validate", "--manifest", str(broken)) == 4
    out = capsys.readouterr()
    printed = [ln for ln in out.out.splitlines() if ln]
    assert len(printed) == len(EXPECTED)
    for line, (cid, code) in EXPECTED.items():
        assert any(ln.startswith(f"{broken}:{line}: {cid}: [{code}] ") for ln in printed), printed
    assert "4 of 9 line(s) set aside" in out.err and "5 usable" in out.err
    # the header check alone misses the NaN and the silent clip (but not the short ones)
    assert _run("data", "validate", "--manifest", str(broken), "--check", "header") == 4
    header_only = capsys.readouterr().out
    assert ": nan: " not in header_only and ": quiet: " not in header_only
    assert ": blip50: [duration_out_of_window]" in header_only
    # the minimum can be lowered or switched off
    assert _run("data", "validate", "--manifest", str(broken), "--min-duration", "0") == 4
    assert ": blip50: " not in capsys.readouterr().out


def test_help_states_the_checks_and_the_minimum(capsys):
    with pytest.raises(SystemExit):
        _run("data", "validate", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert f"default {DEFAULT_MIN_DURATION_S:g} s" in text
    assert "full (default)" in text and "NaN/inf" in text and AUDIO_CHECK_CACHE_FILE in text


def test_inspect_lists_the_same_lines_in_console_and_card(broken, tmp_path, capsys):
    out = tmp_path / "card.json"
    args = ["data", "inspect", "--manifest", str(broken), "--no-dnsmos", "--no-wada"]
    assert _run(*args, "--out", str(out)) == 0
    console = capsys.readouterr()
    card = json.loads(out.read_text())
    rows = card["quarantine"]["lines"]
    assert {r["line"]: (r["id"], r["code"]) for r in rows} == EXPECTED
    assert all(r["reason"] and r["path"] for r in rows)
    assert card["quarantine"]["count"] == 4 and card["overall"]["clips"] == 5
    md = out.with_suffix(".md").read_text()
    for line, (cid, code) in EXPECTED.items():
        assert f"| {line} | {cid} | {code} |" in md
        assert f"| {line} | {cid} | {code} |" in console.out
    assert "## Lines set aside (4)" in md
    assert "4 line(s) set aside" in console.err


def test_second_check_decodes_nothing_and_a_changed_file_is_decoded_again(broken, tmp_path):
    first = load_manifest(broken, **RUN_CHECKS, cache=AudioCheckCache())
    assert first.audio_check["files_decoded"] == 7  # the 40/50 ms clips fail before decoding
    assert (cache_root() / AUDIO_CHECK_CACHE_FILE).is_file()
    again = load_manifest(broken, **RUN_CHECKS, cache=AudioCheckCache())
    assert again.audio_check["files_decoded"] == 0 and again.audio_check["files_from_cache"] == 7
    assert [q.line for q in again.quarantine] == [q.line for q in first.quarantine]
    # the NaN clip is repaired in place: its size/mtime change, so it is decoded and now passes
    fixed = tmp_path / "wavs/nan.wav"
    audio, sr = sf.read(fixed)
    sf.write(fixed, np.nan_to_num(audio), sr, subtype="FLOAT")
    st = fixed.stat()
    os.utime(fixed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = load_manifest(broken, **RUN_CHECKS, cache=AudioCheckCache())
    assert third.audio_check["files_decoded"] == 1
    assert "nan" in {c.id for c in third.clips}


def test_thresholds_apply_to_cached_measurements(broken):
    load_manifest(broken, **RUN_CHECKS, cache=AudioCheckCache())
    lenient = {**RUN_CHECKS, "silence_peak_dbfs": -90.0}
    load = load_manifest(broken, **lenient, cache=AudioCheckCache())
    assert load.audio_check["files_decoded"] == 0
    assert "quiet" in {c.id for c in load.clips}


def test_an_unusable_cache_only_costs_time(broken, tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    load = load_manifest(broken, **RUN_CHECKS, cache=AudioCheckCache(blocker / "c.sqlite"))
    assert {q.line for q in load.quarantine} == set(EXPECTED)
    assert "audio check cache" in caplog.text and "unusable" in caplog.text


def _companion_keys():
    from ttsadapt.data.manifest import KNOWN_FIELDS

    return [k for k in ("ref_audio", "speaker_prompt", "reference_audio") if k in KNOWN_FIELDS]


@pytest.mark.parametrize("key", _companion_keys())
def test_prompt_and_reference_recordings_get_the_full_check_too(
    key, tmp_path, make_wav, speechlike
):
    make_wav("a.wav")
    bad = speechlike(1.0)
    bad[:10] = np.inf
    sf.write(tmp_path / "other.wav", bad, 16000, subtype="FLOAT")
    (tmp_path / "m.jsonl").write_text(json.dumps(_line("a.wav", "a", **{key: "other.wav"})) + "\n")
    (q,) = load_manifest(tmp_path / "m.jsonl", **RUN_CHECKS).quarantine
    assert q.code == "nan_inf" and q.reason.startswith(f"{key}: ") and q.id == "a"
    assert q.path.endswith("other.wav")


def test_check_clips_on_clips_from_elsewhere(tmp_path, make_wav, speechlike):
    good = make_wav("g.wav")
    sf.write(tmp_path / "s.wav", speechlike(0.1), 16000)
    clips = [
        Clip("g", good, "hi", "s", "en", extra={"line": 4}),
        Clip("s", tmp_path / "s.wav", "hi", "s", "en", extra={"line": 9}),
        Clip("m", tmp_path / "missing.wav", "hi", "s", "en"),
    ]
    kept, bad = check_clips(clips, cache=AudioCheckCache())
    assert [c.id for c in kept] == ["g"]
    assert [(q.line, q.id, q.code) for q in bad] == [
        (9, "s", "duration_out_of_window"),
        (0, "m", "missing_file"),
    ]


def test_inspect_manifest_defaults_to_the_run_checks(broken, tmp_path):
    card = inspect_manifest(broken, tmp_path / "c.json", with_dnsmos=False, with_wada=False)
    assert {r["id"] for r in card["quarantine"]["lines"]} == {"nan", "blip40", "blip50", "quiet"}
    assert card["quarantine"]["check"]["mode"] == "full"
    assert card["quarantine"]["check"]["min_duration_s"] == DEFAULT_MIN_DURATION_S
