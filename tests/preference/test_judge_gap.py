"""Reward-vs-judge gaps in the adapt stats: after training, each reward metric scores the last
rollouts again with its default params (the judge) where the reward used other params; a metric
whose reward params are the judge's is marked ``same_model`` and not scored again."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from preference_helpers import DOUBLES, make_ctx, tiny_neutts

from ttsadapt.components import Metric, MetricOutput, Params, TrainingData
from ttsadapt.markers import hookimpl
from ttsadapt.metric_helpers import score_each
from ttsadapt.plugins.methods.dpo import Dpo
from ttsadapt.plugins.methods.grpo import Grpo
from ttsadapt.types import Clip

TEXTS = ["Hello there.", "A quiet morning.", "Rice is good.", "The sun rose."]
OPEN_GATES = {
    "gate_require_stop": False,
    "gate_min_duration_s": 0.0,
    "gate_min_s_per_char": 0.0,
    "gate_max_s_per_char": 100.0,
    "gate_max_silence": 1.0,
    "clone": False,
}
GAP_CALLS: list[tuple[float, list[float]]] = []  # (scale, the values of one score call)


class GapAsr(Metric):
    """A pretend ASR error whose value depends on its params: ``scale`` x the duration in seconds
    (the default, 0.5, plays the judge's bigger model; a reward sets another)."""

    name = "gap_asr"
    description = "test double: duration x scale posing as a character error rate"
    outputs = (MetricOutput("cer", False, (0.0, 1.0)),)
    needs_text = True

    class Params(Params):
        scale: float = 0.5

    def score(self, items):
        def one(it):
            return {"cer": self.params.scale * it.audio.size / it.sample_rate}

        out = score_each(items, one)
        GAP_CALLS.append((self.params.scale, [s.values["cer"] for s in out]))
        return out


class _GapPlugin:
    @staticmethod
    @hookimpl
    def ttsadapt_register_metrics():
        return [GapAsr]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def gap_registry():
    from ttsadapt.registry import build_registry

    registry = build_registry(extra_modules=[DOUBLES], autoload=False)
    registry.pm.register(_GapPlugin(), name="gap_doubles")
    GAP_CALLS.clear()
    return registry


def clips() -> list[Clip]:
    return [
        Clip(id=f"c{i}", audio=f"/nonexistent/c{i}.wav", text=t, speaker="s", language="en")
        for i, t in enumerate(TEXTS)
    ]


def reward(scale: float | None) -> dict:
    return {
        "reward_weights": {"gap_asr": 0.5, "pref_loudness": 0.5},
        "reward_anchors": {
            "gap_asr": [[0.0, 1.0], [2.0, 0.0]],
            "pref_loudness": [[-40.0, 0.0], [0.0, 1.0]],
        },
        "reward_metric_params": {} if scale is None else {"gap_asr": {"scale": scale}},
        **OPEN_GATES,
    }


def test_grpo_records_the_gap_on_the_last_step(tmp_path, gap_registry):
    method = Grpo(lr=1e-3, k=4, prompts_per_step=2, max_steps=2, **reward(0.1))
    result = method.adapt(
        tiny_neutts(), TrainingData(clips(), []), make_ctx(tmp_path, gap_registry)
    )
    gap = result.stats["judge_gap"]
    assert gap["sample"] == "last_step" and gap["n_rollouts"] == 8
    # two reward calls (one a step) at the reward's scale, then one judge call at the default
    assert [scale for scale, _ in GAP_CALLS] == [0.1, 0.1, 0.5]
    last_reward, judged = GAP_CALLS[1][1], GAP_CALLS[2][1]
    entry = gap["metrics"]["gap_asr"]
    assert entry["same_model"] is False and entry["output"] == "cer"
    assert entry["reward_params"] == {"scale": 0.1} and entry["judge_params"] == {"scale": 0.5}
    assert entry["n"] == 8 and entry["n_judge_errors"] == 0
    assert entry["reward_mean"] == pytest.approx(np.mean(last_reward))
    assert entry["judge_mean"] == pytest.approx(np.mean(judged))
    assert entry["judge_mean"] == pytest.approx(5 * entry["reward_mean"])  # same rollouts
    assert entry["gap"] == pytest.approx(entry["judge_mean"] - entry["reward_mean"])
    assert entry["gap"] > 0
    loud = gap["metrics"]["pref_loudness"]  # no params of its own: the judge's model already
    assert loud["same_model"] is True and loud["n"] == 8
    assert loud["judge_mean"] is None and loud["gap"] is None
    assert gap["judge_metric_calls"] == {"gap_asr": 1}
    assert result.stats["reward_metric_calls"] == {"gap_asr": 2, "pref_loudness": 2}


def test_reward_params_equal_to_the_judges_are_not_scored_again(tmp_path, gap_registry):
    method = Grpo(lr=1e-3, k=4, prompts_per_step=1, max_steps=2, **reward(0.5))
    result = method.adapt(
        tiny_neutts(), TrainingData(clips(), []), make_ctx(tmp_path, gap_registry)
    )
    entry = result.stats["judge_gap"]["metrics"]["gap_asr"]
    assert entry["same_model"] is True
    assert entry["reward_params"] == entry["judge_params"] == {"scale": 0.5}
    assert entry["judge_mean"] is None and entry["gap"] is None
    assert entry["reward_mean"] == pytest.approx(np.mean(GAP_CALLS[-1][1]))
    assert len(GAP_CALLS) == 2  # the two steps' reward calls, no judge call
    assert result.stats["judge_gap"]["judge_metric_calls"] == {}


def test_dpo_records_the_gap_on_the_last_candidates(tmp_path, gap_registry):
    method = Dpo(
        lr=1e-3,
        k=4,
        candidate_prompts=3,
        prompts_per_call=2,
        pair_terms="",
        pair_margin=0.0,
        pair_max_duration_ratio=100.0,
        max_steps=1,
        **reward(0.1),
    )
    result = method.adapt(
        tiny_neutts(), TrainingData(clips(), []), make_ctx(tmp_path, gap_registry)
    )
    gap = result.stats["judge_gap"]
    assert gap["sample"] == "last_call" and gap["n_rollouts"] == 4  # the last call: one prompt
    assert [scale for scale, _ in GAP_CALLS] == [0.1, 0.1, 0.5]
    entry = gap["metrics"]["gap_asr"]
    assert entry["n"] == 4
    assert entry["reward_mean"] == pytest.approx(np.mean(GAP_CALLS[1][1]))
    assert entry["judge_mean"] == pytest.approx(np.mean(GAP_CALLS[2][1]))
    assert entry["gap"] == pytest.approx(4 * entry["reward_mean"])
