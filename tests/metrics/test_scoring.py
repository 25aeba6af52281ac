import json

import pytest

from ttsadapt.errors import DataError
from ttsadapt.plugins.metrics.wada_snr import WadaSNR
from ttsadapt.registry import build_registry
from ttsadapt.scoring import Scorer, format_summary, score_manifest
from ttsadapt.types import EvalItem


def test_cache_hits_and_version_invalidates(tmp_path, librivox):
    items = [EvalItem(id=i, audio=a, sample_rate=sr) for i, a, sr, _ in librivox]
    first = Scorer({"wada_snr": WadaSNR()}, tmp_path).score(items, progress=False)

    class Calls(WadaSNR):
        calls = 0

        def score(self, batch):
            Calls.calls += len(batch)
            return super().score(batch)

    again = Scorer({"wada_snr": Calls()}, tmp_path).score(items, progress=False)
    assert Calls.calls == 0
    assert [s.values for s in again["wada_snr"]] == [s.values for s in first["wada_snr"]]

    class Bumped(Calls):
        version = "2"

    Scorer({"wada_snr": Bumped()}, tmp_path).score(items, progress=False)
    assert Calls.calls == len(items)


def test_score_manifest_rows_summary_and_bad_items(tmp_path, librivox):
    import soundfile as sf

    (tmp_path / "w").mkdir()
    _, a, sr, t = librivox[1]
    sf.write(tmp_path / "w/ok.wav", a, sr)
    sf.write(tmp_path / "w/short.wav", a[:400], sr)
    (tmp_path / "w/bad.wav").write_bytes(b"not audio")
    lines = [
        {"audio": "w/ok.wav", "text": t, "speaker": "s", "language": "en"},
        {"audio": "w/short.wav", "text": t, "speaker": "s", "language": "en"},
        {"audio": "w/bad.wav", "text": t, "speaker": "s", "language": "en"},
        {
            "audio": "w/ok.wav",
            "id": "ok2",
            "text": t,
            "speaker": "s",
            "language": "en",
            "ref_audio": "w/missing.wav",
        },
    ]
    man = tmp_path / "m.jsonl"
    man.write_text("".join(json.dumps(x) + "\n" for x in lines))
    summary = score_manifest(
        build_registry(),
        man,
        ["wada_snr", "pesq"],
        tmp_path / "out.jsonl",
        tmp_path / "c",
        progress=False,
    )
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["ok", "short", "bad", "ok2"]
    assert "snr_db" in rows[0]["values"]["wada_snr"]
    assert rows[0]["errors"]["pesq"].startswith("not applicable")
    assert rows[1]["errors"]["wada_snr"].startswith("too short")
    assert rows[2]["errors"]["wada_snr"].startswith("unreadable audio")
    assert rows[3]["errors"]["pesq"].startswith("unreadable ref_audio")
    w = summary["metrics"]["wada_snr"]
    assert w["n_ok"] == 2 and w["errors"] == {"too short": 1, "unreadable audio": 1}
    assert summary["metrics"]["pesq"]["n_not_applicable"] == 2  # ok and short: no reference
    table = format_summary(summary)
    assert "wada_snr" in table and "too short" in table


def test_broken_manifest_names_line(tmp_path):
    man = tmp_path / "m.jsonl"
    man.write_text('{"audio": "a.wav"}\n{oops\n')
    with pytest.raises(DataError, match=r"m.jsonl:2"):
        score_manifest(build_registry(), man, ["wada_snr"], tmp_path / "o.jsonl", None)
