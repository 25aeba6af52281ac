"""VoxCPM2's preference protocol: the Flow-GRPO SDE sampler, its log-probs, the DPO scores.

The tiny VoxCPM2 (random weights) on a fixed seed; lengths are pinned with ``min_len``/``max_len``
where a test needs equal lengths.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")

from ttsadapt.errors import ConfigError  # noqa: E402
from ttsadapt.plugins.backbones.voxcpm2 import VoxCPM2Backbone  # noqa: E402
from ttsadapt.plugins.backbones.voxcpm2 import _flow_preference as fp  # noqa: E402
from ttsadapt.types import SynthesisRequest  # noqa: E402

LONG = SynthesisRequest(id="a", text="A quiet morning by the sea.", language="en", speaker="s")
SHORT = SynthesisRequest(id="b", text="Hello there.", language="en", speaker="s")
FIXED = {"min_len": 5, "max_len": 5}  # five patches, no stop decision


@pytest.fixture(scope="module")
def backbone() -> VoxCPM2Backbone:
    torch.set_num_threads(1)
    bb = VoxCPM2Backbone(model="tiny")
    bb.load("cpu")
    return bb


def _flat(groups):
    return [r for g in groups for r in g]


def test_sde_step_keeps_the_marginals_of_voxcpms_flow():
    """For Gaussian data x1 ~ N(0, s²) voxcpm's path y = (1-t)·x1 + t·z has the exact velocity
    v(y) = (t - (1-t)s²)/var_t · y (var_t = (1-t)²s² + t²). One SDE step t → t - h from y ~ N(0,
    var_t) must land on var_{t-h}, as the ODE step does; a wrong sign of the score term (or the
    wrong end for noise) misses it by about σ²h."""
    s2, t, h, a = 0.25, 0.9, 0.01, 0.7

    def var(u):
        return (1 - u) ** 2 * s2 + u**2

    gen = torch.Generator().manual_seed(0)
    y = torch.randn((400_000, 1, 1), generator=gen, dtype=torch.float64) * var(t) ** 0.5
    v = (t - (1 - t) * s2) / var(t) * y
    mean, std = fp.sde_mean_std(y, v, torch.tensor(t), torch.tensor(h), a)
    after = mean + std * torch.randn(y.shape, generator=gen)
    assert float(std) == pytest.approx(a * (t / (1 - t)) ** 0.5 * h**0.5, rel=1e-6)
    assert float(after.var()) == pytest.approx(var(t - h), abs=3e-3)
    assert abs(var(t) - var(t - h)) > 0.015  # the step really moves the variance
    ode, _ = fp.sde_mean_std(y, v, torch.tensor(t), torch.tensor(h), 0.0)
    torch.testing.assert_close(ode, (y - h * v).float())  # a = 0: voxcpm's Euler step
    noised_ode = ode + std * torch.randn(y.shape, generator=gen)  # noise without the score term
    assert abs(float(noised_ode.var()) - var(t - h)) > 0.03


@pytest.mark.parametrize("mode", ["plain", "clone", "continuation", "clone+continuation"])
def test_noise_level_zero_reproduces_generate(backbone, mode):
    """a = 0 runs the window through the SDE formula and lands on voxcpm's own ``generate`` (the
    prompt audio of the cloning modes goes through a wav file there, hence the tolerance)."""
    rng = np.random.default_rng(0)
    n = int(0.7 * 16000)
    tone = 0.1 * np.sin(np.arange(n) / 16000 * 2 * np.pi * 220) + 0.01 * rng.standard_normal(n)
    req = SynthesisRequest(
        id="p",
        text="A quiet morning.",
        language="en",
        speaker="s",
        prompt_audio=tone.astype(np.float32),
        prompt_sample_rate=16000,
        prompt_text="Hello there.",
    )
    settings = {"min_len": 6, "max_len": 9, "mode": mode}
    torch.manual_seed(3)
    (plain,) = backbone.synthesize([req], settings)
    (rollout,) = _flat(backbone.sample_groups([req], 1, {**settings, "noise_level": 0.0}, 3))
    assert rollout.audio.shape == plain.shape
    np.testing.assert_allclose(rollout.audio, plain, atol=1e-5 if mode == "plain" else 2e-4)
    assert rollout.n_actions == 2 * len(rollout.actions.patches)  # the window ran (as the ODE)


def test_on_policy_ratio_is_one_and_logprobs_match_sampling(backbone):
    groups = backbone.sample_groups([LONG, SHORT], 3, {"min_len": 4, "max_len": 8}, seed=1)
    rollouts = _flat(groups)
    assert [r.group for r in rollouts] == [0, 0, 0, 1, 1, 1]
    backbone.module.zero_grad()
    logp = backbone.rollout_logprobs(rollouts)
    old = torch.tensor([r.old_logprob for r in rollouts])
    # prompts of different lengths in one batch: each row decoded at its own positions
    torch.testing.assert_close(logp.detach().double(), old.double(), rtol=1e-5, atol=1e-2)
    ratio = torch.exp(logp - logp.detach())
    assert torch.equal(ratio, torch.ones_like(ratio))
    ratio.sum().backward()
    named = dict(backbone.module.named_parameters())
    for name in (
        "base_lm.layers.0.self_attn.q_proj.weight",
        "residual_lm.layers.0.self_attn.q_proj.weight",
        "feat_decoder.estimator.decoder.layers.0.self_attn.q_proj.weight",
        "feat_encoder.encoder.layers.0.self_attn.q_proj.weight",
    ):
        grad = named[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    backbone.module.zero_grad()


def test_k_samples_differ_and_are_deterministic_for_a_seed(backbone):
    first = _flat(backbone.sample_groups([LONG], 4, FIXED, seed=7))
    again = _flat(backbone.sample_groups([LONG], 4, FIXED, seed=7))
    other = _flat(backbone.sample_groups([LONG], 4, FIXED, seed=8))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.audio, b.audio)
        assert a.old_logprob == b.old_logprob
    latents = [r.actions.patches for r in first]
    for i in range(4):
        for j in range(i):
            assert (latents[i] - latents[j]).abs().max() > 1e-2
    assert not np.array_equal(first[0].audio, other[0].audio)
    for r in first:
        assert len(r.actions.patches) == 5 and r.n_actions == 10 and not r.stopped
        assert r.audio.dtype == np.float32 and len(r.audio) == 5 * 4 * 160


def test_settings_are_checked(backbone):
    with pytest.raises(ConfigError, match="sde_steps"):
        backbone.sample_groups([LONG], 2, {"sde_steps": [1]}, seed=0)  # zero-velocity step, t=1
    with pytest.raises(ConfigError, match="temperature"):
        backbone.sample_groups([LONG], 2, {"temperature": 0.7}, seed=0)
    with pytest.raises(ConfigError, match="int8"):
        backbone.sample_groups([LONG], 2, {"int8": True}, seed=0)


def test_preference_scores_seeded_and_equal_for_a_copy_at_step_zero(backbone):
    rollouts = _flat(backbone.sample_groups([LONG, SHORT], 2, {"min_len": 3, "max_len": 7}, 2))
    scores = backbone.preference_scores(rollouts, seed=11)
    assert scores.shape == (4,) and scores.requires_grad
    torch.testing.assert_close(
        backbone.preference_scores(rollouts, seed=11), scores, rtol=0, atol=0
    )
    assert not torch.allclose(backbone.preference_scores(rollouts, seed=12), scores)
    # a rollout's score does not depend on what else is scored with it (same t, noise per patch)
    torch.testing.assert_close(backbone.preference_scores(rollouts[2:3], seed=11), scores[2:3])
    reference = copy.copy(backbone)
    reference.module = copy.deepcopy(backbone.module)
    torch.testing.assert_close(reference.preference_scores(rollouts, seed=11), scores)
    backbone.module.zero_grad()
    scores.sum().backward()
    named = dict(backbone.module.named_parameters())
    for name in ("base_lm.layers.0.self_attn.q_proj.weight", "stop_head.weight"):
        assert named[name].grad is not None and named[name].grad.abs().sum() > 0, name
    backbone.module.zero_grad()
    assert backbone.dpo_beta_scale == 0.5
    capped = _flat(backbone.sample_groups([LONG], 2, FIXED, seed=2))  # no stop decision made
    assert torch.isfinite(backbone.preference_scores(capped, seed=11)).all()


@pytest.mark.slow
def test_flow_grpo_learns_to_prefer_higher_energy_latents():
    """A few dozen plain policy-gradient steps of -exp(logp - logp.detach())·A, A the group-normalised
    mean latent (log-mel energy: louder), raise the energy of fresh samples from other seeds."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    backbone = VoxCPM2Backbone(model="tiny")
    backbone.load("cpu")
    params = [p for p in backbone.module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)

    def energy(rollouts):
        return np.array([float(r.actions.patches.mean()) for r in rollouts])

    def probe() -> float:
        return float(energy(_flat(backbone.sample_groups([LONG], 8, FIXED, seed=10_000))).mean())

    before = probe()
    for step in range(24):
        rollouts = _flat(backbone.sample_groups([LONG], 8, FIXED, seed=step))
        reward = energy(rollouts)
        adv = torch.tensor((reward - reward.mean()) / (reward.std() + 1e-8), dtype=torch.float32)
        logp = backbone.rollout_logprobs(rollouts)
        loss = -(torch.exp(logp - logp.detach()) * adv).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = probe()
    assert after > before + 0.1, (before, after)


@pytest.mark.slow
def test_flow_dpo_scores_learn_to_prefer_higher_energy_latents():
    """Diffusion-DPO on the scores, -log σ(β·scale·((s_w - s_w,ref) - (s_l - s_l,ref))), with pairs
    of each step's rollouts (winner: higher mean latent), raises the energy of fresh samples."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    backbone = VoxCPM2Backbone(model="tiny")
    backbone.load("cpu")
    reference = copy.copy(backbone)
    reference.module = copy.deepcopy(backbone.module)
    params = [p for p in backbone.module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)
    beta = 10.0

    def probe() -> float:
        rollouts = _flat(backbone.sample_groups([LONG], 8, FIXED, seed=10_000))
        return float(np.mean([float(r.actions.patches.mean()) for r in rollouts]))

    before = probe()
    for step in range(24):
        rollouts = _flat(backbone.sample_groups([LONG], 8, FIXED, seed=step))
        order = np.argsort([float(r.actions.patches.mean()) for r in rollouts])
        chosen = [rollouts[i] for i in order[::-1][:4]]
        rejected = [rollouts[i] for i in order[:4]]
        scores = backbone.preference_scores(chosen + rejected, seed=step)
        with torch.no_grad():
            ref = reference.preference_scores(chosen + rejected, seed=step)
        margin = (scores[:4] - ref[:4]) - (scores[4:] - ref[4:])
        loss = -torch.nn.functional.logsigmoid(beta * backbone.dpo_beta_scale * margin).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = probe()
    assert after > before + 0.1, (before, after)


def test_rollout_stats_exact_kl_to_the_start_has_a_gradient():
    """``rollout_stats``: the closed-form KL of the SDE steps is 0 against the starting model, and
    after the policy moves it is positive, matches Σ|Δμ|²/(2σ²h) from two log-prob evaluations, and
    has a gradient."""
    from ttsadapt.preference import drop_reference, keep_reference, reference_policy

    torch.manual_seed(0)
    torch.set_num_threads(1)
    backbone = VoxCPM2Backbone(model="tiny")
    backbone.load("cpu")
    rollouts = _flat(backbone.sample_groups([LONG, SHORT], 2, {"min_len": 3, "max_len": 6}, 4))
    assert keep_reference(backbone)
    try:
        stats = fp.rollout_stats(backbone, rollouts, with_kl=True)
        torch.testing.assert_close(stats["kl"], torch.zeros(4), atol=1e-6, rtol=0)
        torch.testing.assert_close(stats["logprob"], backbone.rollout_logprobs(rollouts))
        n_dims = rollouts[0].actions.x_after[0].numel()
        steps = torch.tensor([r.n_actions for r in rollouts], dtype=torch.float32)
        assert (stats["entropy"] / steps / n_dims).std() < 0.2  # per-dim entropy of similar steps
        with torch.no_grad():
            weight = backbone.module.feat_decoder.estimator.out_proj.weight
            weight.add_(
                0.05 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(1))
            )
        stats = fp.rollout_stats(backbone, rollouts, with_kl=True)
        assert (stats["kl"] > 0).all()
        acts = [r.actions for r in rollouts]
        (_, mean, std, _), _ = fp._step_gaussians(backbone.module, acts)
        with reference_policy(backbone):
            start = backbone.module
            ref_mean = fp._step_gaussians(start, acts)[0][1]
        per_step = ((mean - ref_mean) ** 2 / (2 * std**2)).flatten(1).sum(1).detach()
        torch.testing.assert_close(stats["kl"].detach().sum(), per_step.sum(), rtol=1e-5, atol=0)
        backbone.module.zero_grad()
        stats["kl"].sum().backward()
        assert weight.grad is not None and weight.grad.abs().sum() > 0
        assert start is not backbone.module
        assert all(p.grad is None for p in start.parameters())
    finally:
        drop_reference(backbone)


def test_lora_adapters_of_lm_and_locdit_get_gradients_and_the_kl_is_to_the_disabled_adapter():
    from ttsadapt.training.adapters import apply_lora

    torch.manual_seed(0)
    torch.set_num_threads(1)
    backbone = VoxCPM2Backbone(model="tiny")
    backbone.load("cpu")
    apply_lora(backbone, "all", rank=4)
    rollouts = _flat(backbone.sample_groups([LONG], 3, FIXED, seed=5))
    stats = fp.rollout_stats(backbone, rollouts, with_kl=True)
    old = torch.tensor([r.old_logprob for r in rollouts])
    torch.testing.assert_close(
        stats["logprob"].detach().double(), old.double(), rtol=1e-5, atol=1e-2
    )
    torch.testing.assert_close(stats["kl"].detach(), torch.zeros(3), atol=1e-6, rtol=0)
    stats["logprob"].sum().backward()
    grads = {n: p.grad for n, p in backbone.module.named_parameters() if p.requires_grad}
    assert grads and all("lora_" in n for n in grads)
    for prefix in ("base_lm.", "residual_lm.", "feat_decoder.estimator."):
        moved = [n for n, g in grads.items() if n.startswith(prefix) and "lora_B" in n]
        assert moved and any(grads[n].abs().sum() > 0 for n in moved), prefix
    opt = torch.optim.SGD([p for p in backbone.module.parameters() if p.requires_grad], lr=1e-3)
    opt.step()
    kl = fp.rollout_stats(backbone, rollouts, with_kl=True)["kl"]
    assert (kl > 0).all() and kl.requires_grad
