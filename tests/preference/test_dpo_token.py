"""Token-level DPO on a tiny NeuTTS: policy = reference at step 0, the loss, pair mining, pairs
saved with the run, and proof that it learns."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from preference_helpers import CODEBOOK, make_ctx, tiny_neutts
from test_grpo_token import TOY, clips, mean_code, requests

from ttsadapt.components import TrainingData
from ttsadapt.plugins.methods.dpo import PAIRS_FILE, Dpo, mine_pairs
from ttsadapt.preference import dpo_loss, keep_reference, reference_policy


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_policy_and_reference_agree_at_step_zero(adapter):
    from ttsadapt.training.adapters import apply_lora

    bb = tiny_neutts()
    rolls = [r for g in bb.sample_groups(requests(2), 4, None, seed=0) for r in g]
    if adapter == "lora":
        apply_lora(bb, "lm", 4, None, 0.0)
    else:
        for p in bb.module.parameters():
            p.requires_grad_(True)
        keep_reference(bb)
    policy = bb.preference_scores(rolls, seed=0)
    with reference_policy(bb):
        ref = bb.preference_scores(rolls, seed=0)
    assert not ref.requires_grad and policy.requires_grad
    torch.testing.assert_close(policy.detach(), ref, rtol=0, atol=1e-6)
    loss, info = dpo_loss(policy[:4], policy[4:], ref[:4], ref[4:], beta=0.05)
    assert float(loss.detach()) == pytest.approx(math.log(2), abs=1e-6)  # margin 0 at the start
    assert info["implicit_accuracy"] == 0.0
    loss.backward()  # the gradient pushes chosen up and rejected down: it is not zero
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in bb.module.parameters())


def test_dpo_loss_and_the_diffusion_scale():
    pc, pr = torch.tensor([2.0, 1.0]), torch.tensor([0.0, 3.0])
    rc, rr = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0])
    loss, info = dpo_loss(pc, pr, rc, rr, beta=0.5)
    margins = torch.tensor([1.0, -2.0])
    expected = -torch.nn.functional.logsigmoid(0.5 * margins).mean()
    assert float(loss) == pytest.approx(float(expected))
    assert info["implicit_accuracy"] == 0.5
    half, _ = dpo_loss(pc, pr, rc, rr, beta=1.0, beta_scale=0.5)
    assert float(half) == pytest.approx(float(expected))


def test_pairs_need_margin_terms_and_durations():
    rewards = np.array([0.9, 0.5, 0.1, 0.88, 0.8, 0.7, 0.2])
    terms = {
        "cer": np.array([0.9, 0.5, 0.1, 0.9, 0.8, 0.7, 0.2]),
        "speaker_similarity": np.array([0.9, 0.5, 0.95, 0.9, 0.8, 0.7, 0.2]),
    }
    gates = [None] * 6 + ["no_stop: cut"]
    durations = np.array([1.0, 1.0, 1.0, 1.0, 3.0, 1.1, 1.0])
    pairs, refused = mine_pairs(
        rewards,
        terms,
        gates,
        durations,
        [0, 0, 0, 1, 1, 1, 1],
        margin=0.1,
        pair_terms=["cer", "speaker_similarity"],
        max_duration_ratio=1.5,
        per_group=2,
    )
    got = [(p.chosen, p.rejected) for p in pairs]
    # 0 vs 2 refused (worse similarity), 0 vs 1 taken; 3 vs 5 taken (6 gated; 4 too long vs 3)
    assert got == [(0, 1), (3, 5)]
    assert refused["term_speaker_similarity"] == 1
    assert all(p.margin >= 0.1 for p in pairs)


def test_dpo_learns_a_louder_voice_and_saves_its_pairs(tmp_path, registry):
    """Pairs chosen by a reward that prefers loud codes: after 40 DPO steps the samples are
    louder. A sign error, or scores that miss the speech tokens, fails this."""
    bb = tiny_neutts()
    before = mean_code(bb)
    method = Dpo(
        adapter="full",
        lr=1e-2,
        k=8,
        candidate_prompts=16,
        pairs_per_group=3,
        pair_margin=0.02,
        pair_terms="",
        pair_max_duration_ratio=10.0,
        max_steps=40,
        **TOY,
    )
    result = method.adapt(bb, TrainingData(clips(), []), make_ctx(tmp_path, registry))
    after = mean_code(bb)
    assert after > before + 0.06 * CODEBOOK, (before, after)
    stats = result.stats
    assert stats["n_candidates"] == 16 * 8 and stats["n_pairs"] >= 20
    assert stats["reward_metric_calls"] == {"pref_loudness": 4}  # 4 prompts per batched call
    rows = [json.loads(line) for line in (tmp_path / PAIRS_FILE).read_text().splitlines()]
    assert len(rows) == stats["n_pairs"]
    assert all(r["chosen"]["reward"] - r["rejected"]["reward"] >= 0.02 for r in rows)
    assert {"clip", "text", "margin", "chosen", "rejected"} <= set(rows[0])
    curves = result.curves
    assert curves[0]["implicit_accuracy"] == 0.0  # policy == reference at step 0
    assert np.mean([c["implicit_accuracy"] for c in curves[-5:]]) > 0.8
    assert curves[-1]["loss"] < curves[0]["loss"]
    for key in ("loss", "margin_mean", "reward_chosen", "reward_rejected", "grad_norm", "update_s"):
        assert key in curves[0]
    assert (tmp_path / "adapter" / "trainable.safetensors").is_file()


def test_dpo_with_lora_and_sft(tmp_path, registry):
    bb = tiny_neutts()
    method = Dpo(
        lr=5e-2,
        k=6,
        candidate_prompts=4,
        pair_terms="",
        pair_margin=0.05,
        pair_max_duration_ratio=10.0,
        max_steps=2,
        sft_coef=0.1,
        **TOY,
    )
    result = method.adapt(bb, TrainingData(clips(), []), make_ctx(tmp_path, registry))
    assert all(np.isfinite(c["sft_loss"]) for c in result.curves)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    rolls = bb.sample_groups(requests(1), 3, None, seed=1)[0]
    loaded = tiny_neutts()
    loaded.load_adapter(tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.preference_scores(rolls, 0), bb.preference_scores(rolls, 0)
        )
