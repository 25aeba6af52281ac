"""Manifest loading: every bad line is quarantined with its line and reason; good lines load."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ttsadapt.data.manifest import load_clip_audio, load_manifest, write_manifest
from ttsadapt.errors import DataError


def _write_lines(path: Path, lines: list) -> Path:
    out = b""
    for line in lines:
        if isinstance(line, bytes):
            out += line + b"\n"
        elif isinstance(line, str):
            out += line.encode() + b"\n"
        else:
            out += json.dumps(line).encode() + b"\n"
    path.write_bytes(out)
    return path


def _line(audio, text="hello there", speaker="s1", language="en", **kw):
    return {"audio": audio, "text": text, "speaker": speaker, "language": language, **kw}


@pytest.fixture
def bad_manifest(tmp_path, make_wav, speechlike):
    make_wav("wavs/good1.wav")
    make_wav("wavs/good2.wav", sr=22050)
    make_wav("wavs/long.wav", seconds=3.0)
    (tmp_path / "wavs/empty.wav").write_bytes(b"")
    sf.write(tmp_path / "wavs/zero.wav", np.zeros(0, np.float32), 16000)
    full = tmp_path / "wavs/trunc_src.wav"
    sf.write(full, speechlike(2.0), 16000, subtype="PCM_16")
    (tmp_path / "wavs/trunc.wav").write_bytes(full.read_bytes()[:20000])
    (tmp_path / "wavs/notaudio.wav").write_text("this is not audio")
    nan = speechlike(1.0)
    nan[100:200] = np.nan
    sf.write(tmp_path / "wavs/nan.wav", nan, 16000, subtype="FLOAT")
    clipped = np.clip(speechlike(1.0) * 40, -1, 1)
    sf.write(tmp_path / "wavs/clipped.wav", clipped, 16000, subtype="PCM_16")
    sf.write(tmp_path / "wavs/silent.wav", np.zeros(16000, np.float32), 16000)
    outside = tmp_path.parent / "outside.wav"
    sf.write(outside, speechlike(1.0), 16000)
    lines = [
        _line("wavs/good1.wav", id="a"),  # 1 ok
        _line("wavs/missing.wav", id="b"),  # 2 missing_file
        _line("wavs/notaudio.wav", id="c"),  # 3 unreadable
        _line("wavs/trunc.wav", id="d"),  # 4 truncated
        _line("wavs/empty.wav", id="e"),  # 5 zero_length (0 bytes)
        _line("wavs/zero.wav", id="f"),  # 6 zero_length (no samples)
        _line("wavs/good2.wav", id="g", text="   "),  # 7 empty_text
        _line("wavs/long.wav", id="h"),  # 8 duration_out_of_window
        _line("wavs/good2.wav", id="i", language="xx"),  # 9 unknown_language
        '{"audio": "wavs/good1.wav", "text": ',  # 10 malformed_json
        b'{"audio": "wavs/good1.wav", "text": "caf\xe9", "speaker": "s", "language": "en"}',  # 11
        _line("../outside.wav", id="j"),  # 12 path_escapes
        _line("/etc/hostname", id="k"),  # 13 absolute non-audio -> unreadable
        _line("wavs/good2.wav", id="a"),  # 14 duplicate_id
        _line("wavs/nan.wav", id="l"),  # 15 nan_inf (full)
        _line("wavs/clipped.wav", id="m"),  # 16 clipping (full)
        _line("wavs/silent.wav", id="n"),  # 17 silent (full)
        _line("wavs/good2.wav", id="o", speaker="s2"),  # 18 ok
        {"audio": "wavs/good1.wav", "text": "x", "language": "en", "id": "p"},  # 19 missing speaker
        [1, 2],  # 20 not_object
        _line("wavs/good1.wav", id="q", duration=9.0),  # 21 duration_mismatch
    ]
    return _write_lines(tmp_path / "manifest.jsonl", lines)


EXPECTED_HEADER = {
    2: "missing_file",
    3: "unreadable_audio",
    4: "truncated_audio",
    5: "zero_length",
    6: "zero_length",
    7: "empty_text",
    8: "duration_out_of_window",
    9: "unknown_language",
    10: "malformed_json",
    11: "not_utf8",
    12: "path_escapes",
    13: "unreadable_audio",
    14: "duplicate_id",
    19: "missing_field",
    20: "not_object",
    21: "duration_mismatch",
}


def test_every_bad_line_is_quarantined_with_line_and_reason(bad_manifest):
    load = load_manifest(bad_manifest, duration_window=(0.5, 2.5))
    got = {q.line: q.code for q in load.quarantine}
    assert got == EXPECTED_HEADER
    ids = sorted(c.id for c in load.clips)
    assert ids == ["a", "l", "m", "n", "o"]  # sample problems need check_audio="full"
    assert load.lines == 21
    for q in load.quarantine:
        assert q.reason and q.line
    dup = next(q for q in load.quarantine if q.code == "duplicate_id")
    assert "line 1" in dup.reason
    utf = next(q for q in load.quarantine if q.code == "not_utf8")
    assert "0xe9" in utf.reason
    report = load.report()
    assert report["quarantined"] == len(EXPECTED_HEADER)
    assert report["quarantine_by_reason"]["zero_length"] == 2


def test_full_check_finds_sample_problems(bad_manifest, tmp_path):
    load = load_manifest(bad_manifest, check_audio="full", duration_window=(0.5, 2.5))
    got = {q.line: q.code for q in load.quarantine}
    assert got == {**EXPECTED_HEADER, 15: "nan_inf", 16: "clipping", 17: "silent"}
    assert sorted(c.id for c in load.clips) == ["a", "o"]
    load.write_quarantine(tmp_path / "q.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == sorted(got)


def test_missing_manifest_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="manifest not found"):
        load_manifest(tmp_path / "nope.jsonl")


@pytest.mark.parametrize(
    "fmt,ext", [("FLAC", "flac"), ("OGG", "ogg"), ("WAV", "wav"), ("MP3", "mp3")]
)
def test_formats_are_decoded_downmixed_and_resampled(tmp_path, fmt, ext, speechlike):
    sr = 44100
    mono = speechlike(1.0, sr)
    stereo = np.stack([mono, mono], axis=1)
    path = tmp_path / f"clip.{ext}"
    try:
        sf.write(path, stereo, sr, format=fmt)
    except Exception as exc:  # noqa: BLE001  # pragma: no cover - libsndfile without MP3
        pytest.skip(f"libsndfile cannot write {fmt}: {exc}")
    _write_lines(tmp_path / "m.jsonl", [_line(f"clip.{ext}")])
    load = load_manifest(tmp_path / "m.jsonl")
    assert not load.quarantine, load.quarantine
    clip = load.clips[0]
    assert clip.id == "clip"
    assert clip.duration_s == pytest.approx(1.0, abs=0.06)
    audio = load_clip_audio(clip, 16000)
    assert audio.ndim == 1 and audio.dtype == np.float32
    assert audio.size == pytest.approx(16000, abs=1200)
    # the resampler keeps the 120 Hz fundamental's energy: correlation with a direct synthesis
    ref = speechlike(1.0, 16000)
    n = min(ref.size, audio.size)
    if fmt in ("WAV", "FLAC"):
        assert np.corrcoef(ref[:n], audio[:n])[0, 1] > 0.95


def test_write_manifest_round_trips(tmp_path, make_wav):
    make_wav("a/x.wav")
    _write_lines(tmp_path / "m.jsonl", [_line("a/x.wav", id="x", split="dev", dnsmos=3.1)])
    load = load_manifest(tmp_path / "m.jsonl")
    clip = load.clips[0]
    assert clip.split == "validation" and clip.extra["dnsmos"] == 3.1
    out = write_manifest(tmp_path / "copy.jsonl", load.clips)
    again = load_manifest(out)
    assert again.clips[0].audio == clip.audio and again.clips[0].extra["dnsmos"] == 3.1
    assert json.loads(out.read_text())["audio"] == "a/x.wav"


def test_language_allow_list(tmp_path, make_wav):
    make_wav("x.wav")
    _write_lines(
        tmp_path / "m.jsonl", [_line("x.wav", id="1"), _line("x.wav", id="2", language="km")]
    )
    load = load_manifest(tmp_path / "m.jsonl", languages={"km"})
    assert [c.id for c in load.clips] == ["2"]
    assert load.quarantine[0].code == "unknown_language" and load.quarantine[0].line == 1
