"""Metric throughput (run: pytest benchmarks/perf/test_metrics_perf.py --benchmark-enable -s).

Real-time factor (RTF) = seconds of audio scored per second, on the five audiobook clips of
pocketsphinx-testdata (24.7 s). Each test reports it against wall-clock time and against the
CPU time of the whole process (all threads, ``time.process_time``). The machine these run on is
shared, so wall-clock time depends on the other jobs; the CPU-time RTF does not (much), and it
is what the assertions use: a process that needs C CPU-seconds finishes in at most C wall-seconds
on an otherwise idle machine with at least one free core, so CPU RTF >= target means wall RTF >=
target there. Where there is a plain baseline it runs in the same test for a ratio.
"""

import os
import time
from pathlib import Path

import numpy as np
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
    """The five clips; each item's speaker prompt is another clip of the same reader at 0.9 gain,
    so no prompt equals any scored clip (no embedding is shared: the worst case)."""
    if not LIB.exists():
        pytest.skip("install the Debian package pocketsphinx-testdata")
    clips = []
    for line in (LIB / "transcription").read_text().splitlines():
        fid = line.rsplit("(", 1)[1].strip().rstrip(")")
        text = line.split("<s>")[1].split("</s>")[0]
        a, sr = load_audio(LIB / f"{fid}.wav")
        clips.append((fid, a, sr, text))
    return [
        EvalItem(
            id=fid,
            audio=a,
            sample_rate=sr,
            text=text,
            language="en",
            speaker_prompt=clips[(k + 1) % len(clips)][1] * np.float32(0.9),
            speaker_prompt_sample_rate=sr,
        )
        for k, (fid, a, sr, text) in enumerate(clips)
    ]


def _audio_s(items):
    return sum(i.audio.size / i.sample_rate for i in items)


def _timed(fn, *args):
    """(wall s, CPU s of this process, all threads) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - w, time.process_time() - c


def _report(name, items, wall, cpu, target=None):
    s = _audio_s(items)
    goal = f" (target {target}x)" if target else ""
    print(f"\n{name}: {s / cpu:.1f}x real time by CPU time, {s / wall:.1f}x by wall clock{goal}")
    return s / cpu


def _plain_speaker_similarity(encoder, items):
    """Baseline: resemblyzer as documented, one embed_utterance per clip and per prompt, with
    torch's default thread count."""
    from resemblyzer import preprocess_wav

    for it in items:
        a = encoder.embed_utterance(preprocess_wav(it.audio))
        b = encoder.embed_utterance(preprocess_wav(it.speaker_prompt))
        float(np.dot(a, b))


def test_quality_metrics_realtime(benchmark, items):
    metrics = {"dnsmos": DNSMOS(), "wada_snr": WadaSNR(), "speaker_similarity": SpeakerSimilarity()}
    for m in metrics.values():
        m.setup()
    scorer = Scorer(metrics, None)
    scorer.score(items[:1], False)  # first-call allocations
    plain_dnsmos = DNSMOS()
    plain_dnsmos.share_overlap = False
    plain_dnsmos.setup()
    encoder = metrics["speaker_similarity"]._encoder
    base = [_timed(plain_dnsmos.score, items), _timed(_plain_speaker_similarity, encoder, items)]
    base.append(_timed(metrics["wada_snr"].score, items))
    bw, bc = (sum(x) for x in zip(*base))
    _report("baseline (whole DNSMOS model per window, embed_utterance per clip)", items, bw, bc)
    wall, cpu = _timed(
        lambda: benchmark.pedantic(scorer.score, args=(items, False), rounds=1, iterations=1)
    )
    rtf = _report("DNS-MOS + WADA-SNR + speaker similarity", items, wall, cpu, 5)
    print(f"speed-up over the baseline: {bc / cpu:.1f}x CPU time, {bw / wall:.1f}x wall clock")
    for name, m in metrics.items():
        w, c = _timed(m.score, items)
        _report(f"  {name} alone", items, w, c)
    assert rtf >= 5.0


@pytest.mark.parametrize("model,target", [("base", 2.0), ("tiny.en", 2.0)])
def test_cer_realtime(benchmark, items, model, target):
    m = CER(model=model)
    m.setup()
    m.score(items[:1])  # first-call allocations
    wall, cpu = _timed(lambda: benchmark.pedantic(m.score, args=(items,), rounds=1, iterations=1))
    rtf = _report(f"CER with Whisper {model}", items, wall, cpu, target)
    assert rtf >= target


def test_cer_batched_vs_clip_by_clip(benchmark, items):
    """A GRPO-sized group (12 clips: the five, cycled at decreasing gain so no two are equal)
    scored by CER with Whisper tiny.en clip by clip (``batch_size=1``) and with the 12 decoded in
    one ``generate`` call (``batch_size=16``); both ways twice, alternating, and the faster of
    each kept (the machine is shared). The rows must be identical; the ratio is reported. The
    encoder, ~3/4 of the work on 30 s-padded windows, runs clip by clip either way."""
    group = [
        EvalItem(
            id=f"{it.id}-{k}",
            audio=it.audio * np.float32(1 - 0.05 * k),
            sample_rate=it.sample_rate,
            text=it.text,
            language="en",
        )
        for k, it in enumerate(items[i % len(items)] for i in range(12))
    ]
    apart, together = CER(model="tiny.en", batch_size=1), CER(model="tiny.en", batch_size=16)
    apart.setup()
    together.setup()
    apart.score(group[:1])  # first-call allocations
    times: dict[str, list[tuple[float, float]]] = {"apart": [], "together": []}
    rows = {}
    for _ in range(2):
        for name, m in (("apart", apart), ("together", together)):
            w, c = time.perf_counter(), time.process_time()
            rows[name] = m.score(group)
            times[name].append((time.perf_counter() - w, time.process_time() - c))
    benchmark.pedantic(together.score, args=(group,), rounds=1, iterations=1)
    assert [(r.values, r.extra) for r in rows["apart"]] == [
        (r.values, r.extra) for r in rows["together"]
    ]
    (wa, ca), (wt, ct) = (min(times[k], key=lambda t: t[1]) for k in ("apart", "together"))
    print(
        f"\nCER tiny.en, 12 clips ({_audio_s(group):.1f} s): clip by clip {ca:.2f} CPU-s / "
        f"{wa:.2f} s, batched {ct:.2f} CPU-s / {wt:.2f} s: {ca / ct:.2f}x by CPU time, "
        f"{wa / wt:.2f}x by wall clock"
    )
    assert ca / ct > 0.8  # never much slower; the gain itself is reported, not asserted


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
