"""Token-level GRPO on a tiny NeuTTS: batched rollouts, scoring with the sampling transform, speech
tokens only, the on-policy ratio, the exact KL, the records, and proof that it learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from preference_helpers import CODEBOOK, make_ctx, tiny_neutts

from ttsadapt.components import TrainingData
from ttsadapt.errors import PluginError
from ttsadapt.plugins.methods.grpo import Grpo
from ttsadapt.preference import (
    PreferenceBackbone,
    group_advantages,
    grpo_policy_loss,
    keep_reference,
    reference_policy,
    require_preference,
)
from ttsadapt.types import Clip, SynthesisRequest

TEXTS = ["Hello there.", "A quiet morning.", "Rice is good.", "The sun rose."]
TOY = {  # a reward that prefers louder speech: the tone decoder makes higher codes louder
    "reward_weights": {"pref_loudness": 1.0},
    "reward_anchors": {"pref_loudness": [[-40.0, 0.0], [0.0, 1.0]]},
    "gate_require_stop": False,
    "gate_min_duration_s": 0.0,
    "gate_min_s_per_char": 0.0,
    "gate_max_s_per_char": 100.0,
    "gate_max_silence": 1.0,
    "clone": False,
}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def clips() -> list[Clip]:
    return [
        Clip(id=f"c{i}", audio=f"/nonexistent/c{i}.wav", text=t, speaker="s", language="en")
        for i, t in enumerate(TEXTS)
    ]


def requests(n: int = 2) -> list[SynthesisRequest]:
    return [SynthesisRequest(id=c.id, text=c.text, language="en", speaker="s") for c in clips()[:n]]


def mean_code(backbone, seed: int = 123) -> float:
    groups = backbone.sample_groups(requests(4), 16, None, seed=seed)
    codes = [c for g in groups for r in g for c in backbone.ids.codes_from_ids(r.actions["tokens"])]
    return float(np.mean(codes))


def test_advantages_skip_groups_without_spread():
    rewards = [0.2, 0.4, 0.6, 0.5, 0.5, 0.5, 1.0, 0.0]
    adv = group_advantages(rewards, [0, 0, 0, 1, 1, 1, 2, 2], normalize_std=True)
    assert adv.skipped_groups == 1 and adv.groups == 3
    assert adv.used.tolist() == [True, True, True, False, False, False, True, True]
    np.testing.assert_allclose(
        adv.values[:3], np.array([-0.2, 0, 0.2]) / np.std([0.2, 0.4, 0.6]), atol=1e-6
    )
    np.testing.assert_allclose(adv.values[6:], [1.0, -1.0], atol=1e-6)
    plain = group_advantages(rewards, [0, 0, 0, 1, 1, 1, 2, 2], normalize_std=False)
    np.testing.assert_allclose(plain.values[:3], [-0.2, 0.0, 0.2], atol=1e-12)


def test_k_rollouts_in_one_batched_pass_deterministic_for_a_seed():
    bb = tiny_neutts()
    assert isinstance(bb, PreferenceBackbone) and bb.dpo_beta_scale == 1.0
    prompt_passes = []

    def spy(module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:
            prompt_passes.append(ids.shape[0])

    handle = bb.module.register_forward_pre_hook(spy, with_kwargs=True)
    groups = bb.sample_groups(requests(2), 12, None, seed=5)
    handle.remove()
    assert prompt_passes == [24]  # both prompts' 12 samples in one batch
    assert [len(g) for g in groups] == [12, 12]
    assert all(r.group == g for g, rolls in enumerate(groups) for r in rolls)
    again = bb.sample_groups(requests(2), 12, None, seed=5)
    flat = [r.actions["tokens"] for g in groups for r in g]
    assert flat == [r.actions["tokens"] for g in again for r in g]
    other = bb.sample_groups(requests(2), 12, None, seed=6)
    assert flat != [r.actions["tokens"] for g in other for r in g]
    assert len({tuple(t) for t in flat}) > 12  # the samples differ
    for r in (r for g in groups for r in g):
        assert r.n_actions == len(r.actions["tokens"])
        assert r.stopped == (r.actions["tokens"][-1] == bb.ids.speech_end)
        assert r.audio.dtype == np.float32


def test_scoring_uses_the_sampling_transform():
    """Sampled at temperature 0.7 with top-k 5: re-scoring gives the sampling-time log-probs; the
    plain distribution (temperature 1, no top-k) does not."""
    bb = tiny_neutts(min_new_tokens=3)
    groups = bb.sample_groups(requests(2), 6, {"temperature": 0.7, "top_k": 5}, seed=1)
    rolls = [r for g in groups for r in g]
    old = torch.tensor([r.old_logprob for r in rolls])
    with torch.no_grad():
        now = bb.rollout_logprobs(rolls)
        plain = bb.preference_scores(rolls, seed=0)
    torch.testing.assert_close(now.double(), old.double(), rtol=1e-5, atol=1e-4)
    assert (plain.double() - old.double()).abs().min() > 1.0


def test_on_policy_ratio_is_exactly_one():
    bb = tiny_neutts()
    rolls = [r for g in bb.sample_groups(requests(2), 4, None, seed=2) for r in g]
    logp = bb.rollout_logprobs(rolls)
    old = torch.tensor([r.old_logprob for r in rolls], dtype=torch.float32)
    n = torch.tensor([float(r.n_actions) for r in rolls])
    adv = torch.linspace(-1, 1, len(rolls))
    loss, info = grpo_policy_loss(logp, old, adv, n, clip_eps=None)
    assert info["ratio_mean"] == 1.0
    ratio = torch.exp(logp - logp.detach())
    assert torch.equal(ratio, torch.ones_like(ratio))
    loss.backward()  # the gradient is -A/n * grad log p: non-zero
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in bb.module.parameters())
    _, clipped = grpo_policy_loss(logp.detach(), old, adv, n, clip_eps=0.2)
    assert clipped["ratio_mean"] == pytest.approx(1.0, abs=1e-5) and clipped["clip_frac"] == 0.0


def test_prompt_tokens_never_enter_the_score():
    """Changing the LM's output at every prompt position (text, phonemes and a reference's speech
    codes) leaves the scores unchanged; changing it where the first speech token is predicted
    does not."""
    bb = tiny_neutts(max_length=100)
    bb.encode_codes = lambda audio: [3, 1, 4, 1, 5, 9, 2, 6]  # the reference's codes
    req = SynthesisRequest(
        id="r",
        text="Hello there.",
        language="en",
        speaker="s",
        prompt_audio=np.zeros(16000, np.float32),
        prompt_sample_rate=16000,
        prompt_text="Good day.",
    )
    rolls = bb.sample_groups([req], 4, None, seed=3)[0]
    start = len(rolls[0].actions["prompt"])
    assert bb.ids.speech_offset + 9 in rolls[0].actions["prompt"]  # speech codes in the prompt

    def perturbed(upto: int):
        def hook(module, args, output):
            output.last_hidden_state[:, :upto] += 5.0 * torch.randn_like(
                output.last_hidden_state[:, :upto]
            )
            return output

        handle = bb.module.get_decoder().register_forward_hook(hook)
        try:
            with torch.no_grad():
                return bb.rollout_logprobs(rolls), bb.preference_scores(rolls, 0)
        finally:
            handle.remove()

    with torch.no_grad():
        base_lp, base_pref = bb.rollout_logprobs(rolls), bb.preference_scores(rolls, 0)
    lp, pref = perturbed(start - 1)  # every position that predicts a prompt token
    assert torch.equal(lp, base_lp) and torch.equal(pref, base_pref)
    lp, pref = perturbed(start)  # ... and the one that predicts the first speech token
    assert not torch.allclose(lp, base_lp) and not torch.allclose(pref, base_pref)


def test_exact_kl_is_zero_at_the_start_and_has_a_gradient():
    bb = tiny_neutts()
    rolls = [r for g in bb.sample_groups(requests(2), 4, None, seed=4) for r in g]
    for p in bb.module.parameters():
        p.requires_grad_(True)
    keep_reference(bb)
    stats = bb.rollout_stats(rolls, with_kl=True)
    assert stats["kl"].abs().max() < 1e-5
    with torch.no_grad():
        bb.module.get_input_embeddings().weight.add_(
            0.05 * torch.randn_like(bb.module.get_input_embeddings().weight)
        )
    stats = bb.rollout_stats(rolls, with_kl=True)
    assert (stats["kl"] > 1e-4).all()
    assert (stats["entropy"] > 0).all()
    stats["kl"].sum().backward()
    grad = bb.module.get_input_embeddings().weight.grad
    assert grad is not None and grad.abs().sum() > 0
    with reference_policy(bb):  # the frozen copy is swapped in, and back out
        assert not any(p.requires_grad for p in bb.module.parameters())
    assert all(p.requires_grad for p in bb.module.parameters())


def test_lora_reference_is_the_adapter_switched_off():
    from ttsadapt.training.adapters import apply_lora

    bb = tiny_neutts()
    apply_lora(bb, "lm", 4, None, 0.0)
    rolls = bb.sample_groups(requests(1), 4, None, seed=8)[0]
    stats = bb.rollout_stats(rolls, with_kl=True)
    assert torch.equal(stats["kl"], torch.zeros_like(stats["kl"]))  # B = 0: the same model
    with torch.no_grad():
        for name, p in bb.module.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 1.0)
    stats = bb.rollout_stats(rolls, with_kl=True)
    assert (stats["kl"] > 0).all()
    stats["kl"].sum().backward()
    lora = [p for n, p in bb.module.named_parameters() if "lora_B" in n]
    assert all(p.requires_grad for p in lora)  # switched back on after the reference pass
    assert sum(float(p.grad.abs().sum()) for p in lora) > 0


def test_a_backbone_without_the_protocol_is_named():
    class Plain:
        name = "plain_tts"
        module = None

    with pytest.raises(PluginError, match=r"plain_tts.*sample_groups") as info:
        require_preference(Plain(), "grpo")
    assert info.value.exit_code == 3
    with pytest.raises(PluginError, match="backbone 'plain_tts'"):
        Grpo().adapt(Plain(), TrainingData(clips(), []), make_ctx("/tmp"))


def test_grpo_learns_a_louder_voice_and_records_it(tmp_path, registry):
    """Fixed seed, 30 steps, a reward that prefers loud codes: the samples get louder. A sign
    error or a gradient that does not reach the LM fails this."""
    bb = tiny_neutts()
    before = mean_code(bb)
    method = Grpo(adapter="full", lr=1e-2, k=8, prompts_per_step=2, max_steps=30, **TOY)
    result = method.adapt(bb, TrainingData(clips(), []), make_ctx(tmp_path, registry))
    after = mean_code(bb)
    assert abs(before - (CODEBOOK - 1) / 2) < 0.1 * CODEBOOK  # no preference before
    assert after > before + 0.2 * CODEBOOK, (before, after)
    curves = result.curves
    assert len(curves) == 30
    first = np.mean([c["reward_mean"] for c in curves[:5]])
    last = np.mean([c["reward_mean"] for c in curves[-5:]])
    assert last > first + 0.15
    row = curves[0]
    for key in (
        "reward_mean",
        "reward_std",
        "term_pref_loudness_mean",
        "term_pref_loudness_std",
        "entropy",
        "clip_frac",
        "kl",
        "skipped_groups",
        "n_samples",
        "truncation_rate",
        "silence_share",
        "speaking_rate",
        "sample_s",
        "score_s",
        "update_s",
    ):
        assert key in row, key
    assert row["n_samples"] == 16 and row["kl"] is None  # no KL term: null, not NaN
    stats = result.stats
    assert stats["n_samples"] == 30 * 16
    assert stats["reward_metric_calls"] == {"pref_loudness": 30}  # one call per step
    assert stats["sample_s_per_step"] > 0 and stats["update_s_per_step"] > 0
    # the saved weights are the trained model
    from ttsadapt.training.checkpoint import load_trainable

    weights = tmp_path / "adapter" / "trainable.safetensors"
    assert weights.is_file() and result.adapter_bytes > 0
    fresh = tiny_neutts()
    for p in fresh.module.parameters():
        p.requires_grad_(True)
    load_trainable(fresh.module, weights)
    assert mean_code(fresh) == after


def test_grpo_lora_clipped_reuse_kl_and_chaining(tmp_path, registry):
    """LoRA with two passes over each batch (clipped ratio) and a KL term; then a second run
    starts from the first one's adapter (``init_run``), whose reference is that tuned model."""
    first = tmp_path / "first"
    bb = tiny_neutts()
    method = Grpo(lr=5e-2, k=6, max_steps=3, reuse=2, kl_coef=0.1, **TOY)
    result = method.adapt(bb, TrainingData(clips(), []), make_ctx(first, registry))
    used = [c for c in result.curves if c["loss"] is not None]
    assert used and all(0.0 <= c["clip_frac"] <= 1.0 for c in used)
    assert all(np.isfinite(c["kl"]) and c["kl"] >= 0 for c in used)
    assert (first / "adapter" / "adapter_config.json").is_file()
    assert result.trainable_params < result.total_params / 5
    rolls = bb.sample_groups(requests(1), 4, None, seed=9)[0]
    with torch.no_grad():
        trained = bb.rollout_logprobs(rolls)
    again = tiny_neutts()
    chained = Grpo(lr=5e-2, k=6, max_steps=1, kl_coef=0.1, init_run="first", **TOY)
    out = chained.adapt(again, TrainingData(clips(), []), make_ctx(tmp_path / "second", registry))
    assert out.curves[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # reference = the tuned start
    loaded = tiny_neutts()
    loaded.load_adapter(first / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(loaded.rollout_logprobs(rolls), trained)


def test_grpo_with_the_reverse_reward_learns_a_quieter_voice(tmp_path, registry):
    bb = tiny_neutts()
    before = mean_code(bb)
    quiet = dict(TOY, reward_anchors={"pref_loudness": [[-40.0, 1.0], [0.0, 0.0]]})
    Grpo(adapter="full", lr=1e-2, k=8, max_steps=20, **quiet).adapt(
        bb, TrainingData(clips(), []), make_ctx(tmp_path, registry)
    )
    assert mean_code(bb) < before - 0.15 * CODEBOOK
