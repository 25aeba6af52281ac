"""The reward: anchors map exactly, gates give the group's minimum, one metric call per group,
the quality term says which metric it used, and the hacking diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
import ttsadapt_test_doubles_preference as doubles

from ttsadapt.errors import ConfigError
from ttsadapt.rewards import DEFAULT_ANCHORS, RewardModel, RewardParams, piecewise_linear
from ttsadapt.types import EvalItem

SR = 16000
TEXT = "A quiet morning by the sea."  # 22 characters without spaces


def tone(seconds: float, db: float = -10.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (10 ** (db / 20) * np.sqrt(2) * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def item(i: int, audio: np.ndarray, reference: bool = False) -> EvalItem:
    return EvalItem(
        id=f"i{i}",
        audio=audio,
        sample_rate=SR,
        text=TEXT,
        reference_audio=tone(1.5) if reference else None,
        reference_sample_rate=SR if reference else None,
    )


def loudness_model(registry, **overrides) -> RewardModel:
    params = RewardParams(
        reward_weights={"pref_loudness": 1.0},
        reward_anchors={"pref_loudness": [[-40.0, 0.0], [0.0, 1.0]]},
        **overrides,
    )
    return RewardModel(params, lambda name: registry.get("metric", name))


@pytest.mark.parametrize(
    ("x", "y"),
    [(0.0, 1.0), (0.1, 0.5), (1.0, 0.0), (0.05, 0.75), (0.55, 0.25), (2.0, 0.0), (-0.1, 1.0)],
)
def test_cer_anchors(x, y):
    assert piecewise_linear(x, DEFAULT_ANCHORS["cer"]) == pytest.approx(y, abs=1e-12)


@pytest.mark.parametrize(
    ("x", "y"),
    [(0.9, 1.0), (0.6, 0.5), (0.0, 0.0), (0.75, 0.75), (0.3, 0.25), (-0.4, 0.0), (0.97, 1.0)],
)
def test_similarity_anchors_on_the_raw_cosine(x, y):
    assert piecewise_linear(x, DEFAULT_ANCHORS["speaker_similarity"]) == pytest.approx(y, abs=1e-12)


def test_default_reward_uses_raw_cosine_and_its_own_asr():
    """0.45 CER + 0.45 similarity + 0.10 quality; the reward's ASR is tiny.en (the judge's is
    base): judges are not rewards. No model is loaded to check this."""
    from ttsadapt.registry import build_registry

    reg = build_registry(autoload=False)
    model = RewardModel(RewardParams(), lambda name: reg.get("metric", name))
    assert model.params.reward_weights == {"cer": 0.45, "speaker_similarity": 0.45, "quality": 0.1}
    assert model.metric("cer").params.model == "tiny.en"
    assert model.output("speaker_similarity") == "cosine_raw"
    assert model.output("cer") == "cer"
    assert model.output("dnsmos") == "ovrl"


def test_one_batched_call_per_group_and_the_map(registry):
    doubles.CALLS.clear()
    model = loudness_model(registry)
    levels = np.linspace(-30.0, -5.0, 12)
    items = [item(i, tone(1.0, db)) for i, db in enumerate(levels)]
    result = model.score(items, [True] * 12, [0] * 12)
    assert doubles.CALLS == [("pref_loudness", 12)]  # one call, the whole group
    expected = (levels + 40.0) / 40.0
    np.testing.assert_allclose(result.rewards, expected, atol=1e-3)
    np.testing.assert_allclose(result.terms["pref_loudness"], expected, atol=1e-3)
    assert result.gates == [None] * 12
    model.score(items, [True] * 12, [0] * 12)
    assert doubles.CALLS == [("pref_loudness", 12)] * 2


def test_gates_give_the_groups_minimum_not_zero(registry):
    model = loudness_model(registry)
    group0 = [
        item(0, tone(1.0, -10)),  # 0.75
        item(1, tone(1.0, -20)),  # 0.5: the group's minimum
        item(2, tone(1.0, -5)),  # cut at the length cap
        item(3, tone(0.1, -5)),  # too short
        item(4, tone(9.0, -5)),  # 0.41 s per character: too slow
        item(5, np.concatenate([tone(0.2, -5), np.zeros(SR, np.float32)])),  # mostly silence
    ]
    group1 = [item(6, tone(1.0, -30)), item(7, tone(1.0, -30)), item(8, tone(1.0, -5))]
    stopped = [True, True, False, True, True, True, True, True, False]
    result = model.score(group0 + group1, stopped, [0] * 6 + [1] * 3)
    reasons = [g.split(":")[0] if g else None for g in result.gates]
    assert reasons == [
        None,
        None,
        "no_stop",
        "too_short",
        "duration_ratio",
        "non_speech",
        None,
        None,
        "no_stop",
    ]
    np.testing.assert_allclose(result.rewards[:2], [0.75, 0.5], atol=1e-3)
    np.testing.assert_allclose(result.rewards[2:6], [0.5] * 4, atol=1e-3)  # group 0's minimum
    np.testing.assert_allclose(result.rewards[6:], [0.25] * 3, atol=1e-3)  # group 1's minimum
    assert np.isnan(result.terms["pref_loudness"][2:6]).all()  # gated terms are not averaged
    summary = result.summary()
    assert summary["gated_no_stop"] == 2 and summary["gated_non_speech"] == 1
    assert summary["truncation_rate"] == pytest.approx(2 / 9)


def test_quality_uses_the_reference_when_there_is_one(registry):
    doubles.CALLS.clear()
    params = RewardParams(
        reward_weights={"quality": 1.0},
        quality_with_reference="pref_ref_quality",
        quality_without_reference="pref_noref_quality",
        reward_anchors={
            "pref_ref_quality": [[0, 0], [1, 1]],
            "pref_noref_quality": [[0, 0], [1, 1]],
        },
    )
    model = RewardModel(params, lambda name: registry.get("metric", name))
    items = [item(i, tone(1.0), reference=i % 2 == 0) for i in range(6)]
    result = model.score(items, [True] * 6, [0] * 6)
    assert result.quality_metric == ["pref_ref_quality", "pref_noref_quality"] * 3
    np.testing.assert_allclose(result.rewards, [0.8, 0.2] * 3)
    assert sorted(doubles.CALLS) == [("pref_noref_quality", 3), ("pref_ref_quality", 3)]
    assert result.summary()["quality_pref_ref_quality"] == 3


def test_diagnostics_and_metric_params(registry):
    params = RewardParams(
        reward_weights={"pref_cer": 1.0},
        reward_anchors={"pref_cer": DEFAULT_ANCHORS["cer"]},
        reward_metric_params={"pref_cer": {"model": "reward-asr"}},
        gate_max_s_per_char=1.0,
    )
    model = RewardModel(params, lambda name: registry.get("metric", name))
    assert model.metric("pref_cer").params.model == "reward-asr"
    items = [item(0, tone(0.5)), item(1, tone(2.0)), item(2, tone(3.0)), item(3, tone(0.8))]
    for it in items[:3]:
        it.reference_audio, it.reference_sample_rate = tone(1.0), SR
    result = model.score(items, [True] * 4, [0] * 4)
    d = result.diagnostics
    assert d["cer_above_1"] == pytest.approx(0.5)  # 2 s and 3 s "error rates" exceed 1
    assert d["duration_ratio"] == pytest.approx((0.5 + 2.0 + 3.0) / 3)
    assert d["speaking_rate"] == pytest.approx(np.mean([22 / 0.5, 22 / 2, 22 / 3, 22 / 0.8]))
    assert d["silence_share"] == pytest.approx(0.0)
    assert d["truncation_rate"] == 0.0


def test_bad_reward_configs_are_named(registry):
    lookup = lambda name: registry.get("metric", name)  # noqa: E731
    with pytest.raises(ConfigError, match=r"pref_loudness.*anchors"):
        RewardModel(RewardParams(reward_weights={"pref_loudness": 1.0}), lookup)
    with pytest.raises(ConfigError, match="unknown metric 'no_such'"):
        RewardModel(
            RewardParams(
                reward_weights={"no_such": 1.0}, reward_anchors={"no_such": [[0, 0], [1, 1]]}
            ),
            lookup,
        )
    with pytest.raises(ValueError, match="rise strictly"):
        RewardParams(reward_anchors={"cer": [[0.5, 1.0], [0.1, 0.0]]})
    with pytest.raises(ConfigError, match="not an output"):
        RewardModel(
            RewardParams(
                reward_weights={"pref_loudness": 1.0},
                reward_anchors={"pref_loudness": [[0, 0], [1, 1]]},
                reward_outputs={"pref_loudness": "nope"},
            ),
            lookup,
        ).output("pref_loudness")


@pytest.mark.slow
def test_the_real_cer_reward_prefers_the_whole_sentence(tmp_path):
    """Whisper tiny.en (the reward's ASR) on an espeak-ng reading: the whole sentence earns more
    than its first 40 %, and the record keeps the raw CER."""
    import shutil
    import subprocess

    from ttsadapt.audio import load_audio
    from ttsadapt.registry import build_registry

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    text = "The birch canoe slid on the smooth planks."
    wav = tmp_path / "s.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
    audio, sr = load_audio(wav)
    reg = build_registry(autoload=False)
    model = RewardModel(RewardParams(reward_weights={"cer": 1.0}), lambda n: reg.get("metric", n))
    items = [
        EvalItem(id="whole", audio=audio, sample_rate=sr, text=text),
        EvalItem(id="part", audio=audio[: int(0.4 * audio.size)], sample_rate=sr, text=text),
    ]
    try:
        model.metric("cer").setup()
    except Exception as exc:  # noqa: BLE001 - Whisper tiny.en ships with an optional package
        pytest.skip(f"Whisper tiny.en is not available offline: {exc}")
    result = model.score(items, [True, True], [0, 0])
    assert result.gates == [None, None]
    assert result.raw["cer"][0] < 0.2 and result.raw["cer"][1] > 0.3
    assert result.rewards[0] > result.rewards[1] + 0.2


def test_reference_copy_of_a_module_with_weight_norm_after_a_forward():
    """torch's original weight_norm leaves a computed weight with a graph after a forward in grad
    mode (Kokoro's decoder has dozens); the frozen reference copy is still made, and equal."""
    import types

    import torch

    from ttsadapt.preference import keep_reference, reference_policy

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.utils.weight_norm(torch.nn.Linear(4, 3)), torch.nn.Tanh())
    module(torch.randn(2, 4)).sum().backward()  # leaves layer 0's weight with a grad_fn
    backbone = types.SimpleNamespace(module=module)
    assert keep_reference(backbone, force=True)
    x = torch.randn(5, 4)
    with reference_policy(backbone):
        ref = backbone.module(x)
    assert torch.allclose(ref, module(x)) and not ref.requires_grad
