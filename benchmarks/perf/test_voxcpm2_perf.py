"""VoxCPM2 tiny backbone: one training step (vs upstream's bare forward) and synthesis RTF.

Run: .venv/bin/pytest benchmarks/perf/test_voxcpm2_perf.py --benchmark-enable -p no:cacheprovider
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")

from ttsadapt.audio import load_audio  # noqa: E402
from ttsadapt.plugins.backbones.voxcpm2 import VoxCPM2Backbone  # noqa: E402
from ttsadapt.types import Clip, SynthesisRequest  # noqa: E402

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


@pytest.fixture(scope="module")
def tiny():
    wavs = sorted(LIBRIVOX.glob("*.wav"))[:2]
    if len(wavs) < 2:
        pytest.skip("pocketsphinx-testdata (Debian) is not installed")
    backbone = VoxCPM2Backbone()
    backbone.load("cpu")
    clips = [
        Clip(id=w.stem, audio=w, text="the family of dashwood", speaker="s", language="en")
        for w in wavs
    ]
    return backbone, backbone.collate(backbone.prepare(clips))


def _step(backbone, batch, opt, bare: bool) -> None:
    torch.manual_seed(0)
    if bare:
        m = backbone.module
        out = m(
            batch["text_tokens"],
            batch["text_mask"],
            batch["audio_feats"],
            batch["audio_mask"],
            batch["loss_mask"],
            batch["position_ids"],
            batch["labels"],
        )
        loss = out["loss/diff"] + out["loss/stop"]
    else:
        loss = backbone.loss(batch)["loss"]
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_training_step_tiny_voxcpm2(benchmark, tiny):
    backbone, batch = tiny
    opt = torch.optim.AdamW(backbone.module.parameters(), lr=1e-5)
    backbone.module.train()
    _step(backbone, batch, opt, bare=True)  # warm-up
    bare_times = []

    def timed_pair() -> None:
        # interleave a bare upstream step with ours, so CPU contention hits both alike
        t0 = time.perf_counter()
        _step(backbone, batch, opt, bare=True)
        bare_times.append(time.perf_counter() - t0)
        _step(backbone, batch, opt, bare=False)

    benchmark.pedantic(timed_pair, rounds=3, iterations=1)
    pair_min = benchmark.stats.stats.min
    bare_s = min(bare_times)
    ratio = (pair_min - bare_s) / bare_s
    benchmark.extra_info.update(bare_step_s=bare_s, ours_step_s=pair_min - bare_s, ratio=ratio)
    assert ratio < 1.25  # backbone.loss adds nothing but a weighted sum


def test_synthesis_rtf_tiny_voxcpm2(benchmark, tiny):
    backbone, _ = tiny
    req = SynthesisRequest(id="u", text="the family of dashwood", language="en", speaker="s")

    def speak() -> np.ndarray:
        torch.manual_seed(0)
        return backbone.synthesize([req], {"max_len": 40})[0]

    audio = benchmark.pedantic(speak, rounds=2, iterations=1)
    seconds = len(audio) / backbone.sample_rate
    benchmark.extra_info.update(
        audio_s=seconds, rtf=benchmark.stats.stats.mean / max(seconds, 1e-9)
    )
    assert seconds > 0


def test_mel_codec_decode_rtf(benchmark):
    from ttsadapt.plugins.backbones.voxcpm2._mel import MelCodec

    wav = sorted(LIBRIVOX.glob("*.wav"))
    if not wav:
        pytest.skip("pocketsphinx-testdata (Debian) is not installed")
    audio, _ = load_audio(wav[0], target_sr=16000)
    codec = MelCodec()
    feats = codec.encode_numpy(audio)
    benchmark.pedantic(codec.decode_numpy, args=(feats,), rounds=2, iterations=1)
    benchmark.extra_info.update(rtf=benchmark.stats.stats.mean / (len(audio) / 16000))
