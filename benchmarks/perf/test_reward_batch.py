"""Reward scoring of one GRPO group (K = 12 rollouts of one sentence) in one batched call against
item by item, with the default reward (0.45 CER with Whisper tiny.en + 0.45 speaker similarity +
0.10 PESQ against the reference recording); the models are loaded before either is timed:

    .venv/bin/pytest benchmarks/perf/test_reward_batch.py --benchmark-enable -s -p no:cacheprovider

The rollouts are espeak-ng readings of the sentence at 12 speaking rates (a group's samples differ
in length and pace); the speaker prompt is a LibriVox reading (pocketsphinx-testdata). Times are
CPU seconds of the whole process (the machine is shared; see test_metrics_perf.py). Each metric is
also timed alone, both ways, to show where the time goes.

Two more costs of a GRPO step are measured here: one step's wall time split into sampling /
scoring / update on NeuTTS, and GRPO's batched sampler (K = 12 in one pass) against 12 sequential
ones.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from ttsadapt.audio import load_audio
from ttsadapt.registry import build_registry
from ttsadapt.rewards import RewardModel, RewardParams
from ttsadapt.types import EvalItem

K = 12
TEXT = "The birch canoe slid on the smooth planks."
LIB = Path("/usr/share/pocketsphinx/test/data/librivox")


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    if shutil.which("espeak-ng") is None or not LIB.exists():
        pytest.skip("needs espeak-ng and pocketsphinx-testdata")
    folder = tmp_path_factory.mktemp("group")
    prompt, prompt_sr = load_audio(sorted(LIB.glob("*.wav"))[0])
    items = []
    for i in range(K):
        wav = folder / f"{i}.wav"
        subprocess.run(["espeak-ng", "-s", str(120 + 10 * i), "-w", str(wav), TEXT], check=True)
        audio, sr = load_audio(wav)
        items.append(
            EvalItem(
                id=f"r{i}",
                audio=audio,
                sample_rate=sr,
                text=TEXT,
                language="en",
                reference_audio=load_audio(folder / "0.wav")[0] if i else audio,
                reference_sample_rate=sr,
                speaker_prompt=prompt,
                speaker_prompt_sample_rate=prompt_sr,
            )
        )
    return items


def test_group_of_12_batched_vs_item_by_item(group, benchmark):
    registry = build_registry(autoload=False)
    reward = RewardModel(RewardParams(), lambda name: registry.get("metric", name))
    stopped, groups = [True] * K, [0] * K
    try:
        reward.score(group[:2], stopped[:2], groups[:2])  # load every model first
    except Exception as exc:  # noqa: BLE001 - the scoring models ship with optional packages
        pytest.skip(f"a reward model is not available offline: {exc}")
    t0 = time.process_time()
    for item in group:
        reward.score([item], [True], [0])
    one_by_one = time.process_time() - t0
    t0 = time.process_time()
    result = benchmark.pedantic(reward.score, args=(group, stopped, groups), rounds=1, iterations=1)
    batched = time.process_time() - t0
    assert result.gates == [None] * K and np.isfinite(result.rewards).all()
    ratio = one_by_one / batched
    print(
        f"\nreward of a group of {K}: item by item {one_by_one:.2f} CPU-s, one batched call "
        f"{batched:.2f} CPU-s, {ratio:.2f}x; rewards {np.round(result.rewards, 3).tolist()}"
    )
    for name in reward.calls:  # where the time goes: each metric alone, the same two ways
        metric = reward.metric(name)
        t0 = time.process_time()
        for item in group:
            metric.score([item])
        alone = time.process_time() - t0
        t0 = time.process_time()
        metric.score(group)
        together = time.process_time() - t0
        print(f"  {name}: item by item {alone:.2f} CPU-s, batched {together:.2f} CPU-s")
    # One Metric.score call per metric for the group. The ratio is reported, not asserted: the
    # CER metric decodes a group's clips in one Whisper call, but its encoder (about 3/4 of the
    # work, every clip padded to 30 s) runs clip by clip and is no cheaper batched on a CPU, so a
    # group costs about what its items cost apart; speaker similarity batches (about 3x).
    assert ratio > 0.5


def test_grpo_step_wall_time_split(tmp_path):
    """One GRPO step's wall time split into sampling / scoring / update on NeuTTS: the tiny Qwen2
    (random weights: it babbles, so the rollouts are not gated on their stop here) speaking through
    the mel_vq stand-in codec fitted on LibriVox, K = 12 rollouts of one sentence prompted with
    another LibriVox clip to clone, the default reward (Whisper tiny.en CER, speaker similarity,
    PESQ), LoRA rank 8. Needs the reward's models installed (the test above checks them)."""
    import logging

    torch = pytest.importorskip("torch")
    from ttsadapt.components import RunContext, TrainingData
    from ttsadapt.plugins.backbones.neutts import NeuTTS
    from ttsadapt.plugins.methods.grpo import Grpo
    from ttsadapt.types import Clip

    if not LIB.exists():
        pytest.skip("needs pocketsphinx-testdata")
    torch.set_num_threads(1)
    wavs = sorted(LIB.glob("*.wav"))
    backbone = NeuTTS(
        model="tiny", codec="mel_vq", codec_fit=str(LIB), codebook_size=256, tiny_hidden=64
    )
    backbone.load("cpu")
    texts = {
        line.rsplit("(", 1)[1].strip().rstrip(")"): line.split("<s>")[1].split("</s>")[0]
        for line in (LIB / "transcription").read_text().splitlines()
    }
    clips = [
        Clip(id=w.stem, audio=w, text=texts[w.stem], speaker="reader", language="en") for w in wavs
    ]
    ctx = RunContext(
        run_dir=tmp_path,
        seed=0,
        device="cpu",
        logger=logging.getLogger("bench"),
        progress=lambda total=None, desc=None: _Bar(),
    )
    method = Grpo(
        k=K,
        prompts_per_step=1,
        max_steps=2,
        lr=1e-4,
        sampling={"min_new_tokens": 50, "max_length": 700},
        gate_require_stop=False,
        gate_max_s_per_char=1.0,
    )
    result = method.adapt(backbone, TrainingData(clips, []), ctx)
    last = result.curves[-1]  # the first step also loads the reward's models
    print(
        f"\nGRPO step (NeuTTS tiny + mel_vq, K={K}, 1 prompt, {last['mean_actions']:.0f} tokens "
        f"per rollout): sampling {last['sample_s']:.2f} s, scoring {last['score_s']:.2f} s, "
        f"update {last['update_s']:.2f} s, total {last['step_s']:.2f} s"
    )
    print(
        {
            k: v
            for k, v in last.items()
            if k.startswith(("gated", "n_", "reward", "duration", "silence"))
        }
    )
    assert last["sample_s"] > 0 and last["score_s"] > 0 and last["update_s"] > 0


class _Bar:
    def update(self, n=1):
        pass

    def set_postfix(self, postfix, refresh=True):
        pass

    def close(self):
        pass


def test_sample_groups_k12_vs_sequential():
    """GRPO's sampler (``NeuTTS.sample_groups``: K = 12 rows in one KV-cached batch) against 12
    calls of one sample each, same settings as test_batched_rollout.py (CPU seconds)."""
    torch = pytest.importorskip("torch")
    from ttsadapt.plugins.backbones.neutts import NeuTTS
    from ttsadapt.types import SynthesisRequest

    torch.set_num_threads(1)
    backbone = NeuTTS(model="tiny", codec="none", codebook_size=256, tiny_hidden=64)
    backbone.load("cpu")
    backbone.decode_codes = lambda codes: np.zeros(480 * len(codes), np.float32)  # no codec
    settings = {"min_new_tokens": 60, "max_length": 200, "temperature": 1.0, "top_k": 50}
    request = SynthesisRequest(
        id="k", text="A quiet morning by the sea.", language="en", speaker="s"
    )
    backbone.sample_groups([request], 1, settings, seed=0)  # warm up
    t0 = time.process_time()
    for i in range(K):
        backbone.sample_groups([request], 1, settings, seed=i)
    sequential = time.process_time() - t0
    t0 = time.process_time()
    (group,) = backbone.sample_groups([request], K, settings, seed=0)
    batched = time.process_time() - t0
    ratio = sequential / batched
    print(
        f"\nsample_groups K={K}: sequential {sequential:.2f} CPU-s, batched {batched:.2f} CPU-s, "
        f"{ratio:.1f}x ({np.mean([r.n_actions for r in group]):.0f} tokens per rollout)"
    )
    assert len(group) == K and ratio >= 3.0
