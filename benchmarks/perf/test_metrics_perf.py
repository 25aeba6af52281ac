"""Metric throughput (run: pytest benchmarks/perf/test_metrics_perf.py --benchmark-enable -s).

Real-time factor = seconds of audio scored per wall-clock second, on the five audiobook clips of
pocketsphinx-testdata (24.7 s) plus codec2's 10.8 s clip.
"""

import os
import time
from pathlib import Path

import pytest

from ttsadapt.audio import load_audio
from ttsadapt.plugins.metrics.cer import CER
from ttsadapt.plugins.metrics.dnsmos import DNSMOS
from ttsadapt.plugins.metrics.speaker_similarity import SpeakerSimilarity
from ttsadapt.plugins.metrics.wada_snr import WadaSNR
from ttsadapt.scoring import Scorer
from ttsadapt.types import EvalItem

os.environ.setdefault("HF_HUB_OFFLINE", "1")
LIB = Path("/usr/share/pocketsphinx/test/data/librivox")


@pytest.fixture(scope="module")
def items():
    if not LIB.exists():
        pytest.skip("install the Debian package pocketsphinx-testdata")
    out = []
    lines = (LIB / "transcription").read_text().splitlines()
    for line in lines:
        fid = line.rsplit("(", 1)[1].strip().rstrip(")")
        text = line.split("<s>")[1].split("</s>")[0]
        a, sr = load_audio(LIB / f"{fid}.wav")
        out.append(
            EvalItem(
                id=fid,
                audio=a,
                sample_rate=sr,
                text=text,
                language="en",
                speaker_prompt=a,
                speaker_prompt_sample_rate=sr,
            )
        )
    return out


def _rtf(items, seconds):
    return sum(i.audio.size / i.sample_rate for i in items) / seconds


def test_quality_metrics_realtime(benchmark, items):
    metrics = {"dnsmos": DNSMOS(), "wada_snr": WadaSNR(), "speaker_similarity": SpeakerSimilarity()}
    for m in metrics.values():
        m.setup()
    scorer = Scorer(metrics, None)
    t = time.perf_counter()
    benchmark.pedantic(scorer.score, args=(items, False), rounds=1, iterations=1)
    rtf = _rtf(items, time.perf_counter() - t)
    print(f"\nDNS-MOS + WADA-SNR + speaker similarity: {rtf:.1f}x real time (target 5x)")
    assert rtf >= 5.0


@pytest.mark.parametrize("model,target", [("base", 2.0), ("tiny.en", 2.0)])
def test_cer_realtime(benchmark, items, model, target):
    m = CER(model=model)
    m.setup()
    t = time.perf_counter()
    benchmark.pedantic(m.score, args=(items,), rounds=1, iterations=1)
    rtf = _rtf(items, time.perf_counter() - t)
    print(f"\nCER with Whisper {model}: {rtf:.1f}x real time (target {target}x)")
    assert rtf >= target


def test_cached_rescoring(benchmark, items, tmp_path):
    metrics = {"dnsmos": DNSMOS(), "wada_snr": WadaSNR(), "speaker_similarity": SpeakerSimilarity()}
    t = time.perf_counter()
    Scorer(metrics, tmp_path).score(items, progress=False)
    first = time.perf_counter() - t
    t = time.perf_counter()
    benchmark.pedantic(Scorer(metrics, tmp_path).score, args=(items, False), rounds=1, iterations=1)
    second = time.perf_counter() - t
    print(f"\ncached re-scoring: {first / second:.0f}x faster than the first pass")
    assert first / second >= 200
