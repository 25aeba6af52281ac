import json

import pytest

from ttsadapt.audio import load_audio
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


class _Counting(WadaSNR):
    """WADA-SNR that counts its set-ups and scored items and fails on clips named ``bad*``."""

    name = "counting"
    setups = 0
    scored = 0

    def setup(self):
        _Counting.setups += 1

    def score(self, batch):
        if any(it.id.startswith("bad") for it in batch):
            raise RuntimeError("cannot score a bad clip")
        _Counting.scored += len(batch)
        return super().score(batch)


class _Registry:
    """The part of a component registry the evaluation path reads: metric classes by name."""

    def get(self, kind, name):
        assert kind == "metric"
        return {"counting": _Counting, "wada_snr": WadaSNR}[name]

    def names(self, kind):
        return ["counting", "wada_snr"]


def _clips(tmp_path, librivox, ids):
    import soundfile as sf

    from ttsadapt.types import Clip

    clips = []
    for cid, (_, audio, sr, text) in zip(ids, librivox):
        sf.write(tmp_path / f"{cid}.wav", audio, sr)
        clips.append(Clip(cid, tmp_path / f"{cid}.wav", text, "s", "en"))
    return clips


def test_runs_cards_and_filters_share_one_metric_instance_set_up_once(tmp_path, librivox):
    from ttsadapt.evaluation import ClipScorer, Evaluator, metric_instance

    _Counting.setups = _Counting.scored = 0
    registry = _Registry()
    metric = metric_instance(registry, "counting")
    assert metric_instance(registry, "counting") is metric
    assert metric_instance(registry, "wada_snr", {}) is metric_instance(registry, "wada_snr")
    assert metric_instance(_Registry(), "counting") is not metric  # per registry
    items = [EvalItem(id=i, audio=a, sample_rate=sr) for i, a, sr, _ in librivox]
    evaluator = Evaluator(registry, tmp_path / "cache")
    first = evaluator.score(items, {"counting": evaluator.metric("counting")}, progress=False)
    again = evaluator.score(items, {"counting": evaluator.metric("counting")}, progress=False)
    assert [s.values for s in again["counting"]] == [s.values for s in first["counting"]]
    assert _Counting.scored == len(items)  # the second pass came from the score cache
    cards = ClipScorer(registry, "counting")
    for clip in _clips(tmp_path, librivox, ["c0", "c1"]):
        cards.add(clip, *load_audio(clip.audio))
    cards.flush()
    assert set(cards.values) == {"c0", "c1"} and _Counting.setups == 1
    # same values on every path: the clip path and the item path call the same scorer
    assert cards.values["c0"] == first["counting"][0].values["snr_db"]


def test_score_clips_memoises_on_the_clip_and_isolates_a_failing_clip(tmp_path, librivox):
    from ttsadapt.evaluation import score_clips

    _Counting.scored = 0
    clips = _clips(tmp_path, librivox, ["ok0", "bad1", "ok2"])
    values = score_clips(clips, "counting", _Registry())
    assert values[0][0] is not None and values[2][0] is not None
    assert values[1][0] is None and "cannot score a bad clip" in values[1][1]
    assert clips[0].extra["scores"]["counting/snr_db"] == values[0][0]
    assert "scores" not in clips[1].extra
    assert _Counting.scored == 2
    assert score_clips(clips, "counting", _Registry())[::2] == values[::2]
    assert _Counting.scored == 2  # memoised: scored once
