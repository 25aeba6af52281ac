"""Data performance targets (pytest-benchmark; run with --benchmark-enable).

* loading + validating a 10,000-line manifest (headers only): under 10 s;
* ``data inspect`` on one hour of audio with DNS-MOS: under 2 minutes (2-core CPU). Energy,
  words and WADA-SNR cover every clip; DNS-MOS covers the card's default deterministic sample
  (``DnsmosSample``: up to 12 clips / 2 min per speaker) and the card says so (``dnsmos_clips``).
  Wall and CPU time are both recorded (``extra_info``): the machine is shared.

The baseline in the same run is plain ``json.loads`` of every line plus ``soundfile.info`` of
every file — the least any validating loader must do.
"""

import json
import os
import resource
import time

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _tone(seconds, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    env = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 2
    return (0.1 * env * np.sin(2 * np.pi * 150 * t) + 1e-3 * rng.standard_normal(t.size)).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def manifest_10k(tmp_path_factory):
    root = tmp_path_factory.mktemp("m10k")
    (root / "wavs").mkdir()
    for i in range(200):
        sf.write(root / "wavs" / f"{i}.wav", _tone(1.0 + i % 5, seed=i), 16000, subtype="PCM_16")
    lines = [
        json.dumps(
            {
                "id": f"c{i}",
                "audio": f"wavs/{i % 200}.wav",
                "text": "a short sentence",
                "speaker": f"s{i % 20}",
                "language": "en",
            }
        )
        for i in range(10_000)
    ]
    (root / "m.jsonl").write_text("\n".join(lines) + "\n")
    return root / "m.jsonl"


def test_load_10k_manifest_headers(benchmark, manifest_10k):
    from ttsadapt.data.manifest import load_manifest

    times: list[float] = []

    def timed():
        start = time.perf_counter()
        result = load_manifest(manifest_10k)
        times.append(time.perf_counter() - start)
        return result

    load = benchmark.pedantic(timed, rounds=3, iterations=1)
    assert len(load.clips) == 10_000 and not load.quarantine
    assert max(times) < 10.0  # also checked when benchmarks are disabled (a single round)


def test_baseline_json_and_sf_info(benchmark, manifest_10k):
    def baseline():
        base = manifest_10k.parent
        for line in manifest_10k.read_text().splitlines():
            sf.info(str(base / json.loads(line)["audio"]))

    benchmark.pedantic(baseline, rounds=3, iterations=1)


@pytest.mark.slow
def test_inspect_one_hour_with_dnsmos(benchmark, tmp_path):
    from ttsadapt.data.cards import inspect_manifest
    from ttsadapt.registry import build_registry

    registry = build_registry(autoload=False)
    if "dnsmos" not in registry.names("metric"):
        registry = build_registry(autoload=False, extra_modules=["ttsadapt.plugins.metrics.dnsmos"])
    # one hour: 600 clips of 6 s, 6 speakers (files repeat 60 distinct signals)
    (tmp_path / "w").mkdir()
    for i in range(60):
        sf.write(tmp_path / "w" / f"{i}.wav", _tone(6.0, seed=i), 16000, subtype="PCM_16")
    lines = [
        json.dumps(
            {
                "id": f"c{i}",
                "audio": f"w/{i % 60}.wav",
                "text": "one two three",
                "speaker": f"s{i % 6}",
                "language": "en",
            }
        )
        for i in range(600)
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")

    def cpu():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    start, cpu_start = time.perf_counter(), cpu()
    card = benchmark.pedantic(
        inspect_manifest,
        args=(tmp_path / "m.jsonl", tmp_path / "card.json"),
        kwargs={"registry": registry},
        rounds=1,
        iterations=1,
    )
    wall, cpu_s = time.perf_counter() - start, cpu() - cpu_start
    benchmark.extra_info.update(
        wall_s=round(wall, 2),
        cpu_s=round(cpu_s, 2),
        dnsmos_clips=card["overall"]["dnsmos_clips"],
        clips=card["overall"]["clips"],
    )
    print(f"\ninspect 1 h: wall {wall:.1f} s, cpu {cpu_s:.1f} s, {card['dnsmos_sample']}")
    assert card["overall"]["hours"] == pytest.approx(1.0, abs=0.01)
    assert card["overall"]["dnsmos_ovrl_mean"] is not None
    assert card["overall"]["wada_snr_mean_db"] is not None
    assert card["overall"]["clips"] == 600
    assert all(row["dnsmos_clips"] == 12 for row in card["speakers"].values())
    assert wall < 120
