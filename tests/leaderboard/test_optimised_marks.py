"""The leaderboard marks a metric a system's training also optimised (judges are not rewards), and
shows where a run chained ``after`` another run of its suite started.

What a run optimised is read from any method's ``reward_weights`` (no method or metric name is
known to the leaderboard); the Markdown and HTML cells get a "†" and the legend says why, the CSV
an ``optimised`` column; a leaderboard without a reward-trained system reads as before."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_results import ScoredRun, write_scored_runs
from pydantic import Field

from ttsadapt.components import AdaptResult, Method, Params
from ttsadapt.leaderboard import build_leaderboard
from ttsadapt.leaderboard.load import optimised_metrics
from ttsadapt.markers import hookimpl
from ttsadapt.registry import build_registry
from ttsadapt.runner import SuiteRunner
from ttsadapt.suite import load_suite

MARK = "†"

# ------------------------------------------------------------------ reading the reward params


def test_reward_terms_are_metrics_and_quality_is_both_of_its_metrics():
    default = {"reward_weights": {"cer": 0.45, "speaker_similarity": 0.45, "quality": 0.1}}
    assert optimised_metrics(default) == ("cer", "dnsmos", "pesq", "speaker_similarity")
    custom = {
        "reward_weights": {"quality": 1.0, "utmos": 0.5, "wer": 0.0},
        "quality_with_reference": "visqol",
        "quality_without_reference": "squim",
    }
    assert optimised_metrics(custom) == ("squim", "utmos", "visqol")  # weight 0: not optimised
    assert optimised_metrics({"rank": 8}) == ()
    assert optimised_metrics(None) == ()


def test_a_chained_run_optimised_what_its_sources_optimised():
    after = {
        "label": "grpo after lora",
        "system": ["grpo", "1", {"reward_weights": {"cer": 1.0}}, ["lora", "1", {"rank": 8}, None]],
    }
    assert optimised_metrics({"reward_weights": {"utmos": 1.0}}, after) == ("cer", "utmos")
    assert optimised_metrics({"rank": 4}, after) == ("cer",)


# ------------------------------------------------------------------ marks in the three formats


def _values(shift: float, n: int = 12) -> dict[str, float]:
    rng = np.random.default_rng(int(shift * 100) + 7)
    return {f"u{i:02d}": float(0.5 + shift + 0.05 * rng.normal()) for i in range(n)}


def _runs(with_reward: bool) -> list[ScoredRun]:
    runs = [
        ScoredRun("zero_shot", 0, {"cer": {"cer": _values(0.0)}, "mos": {"mos": _values(0.0)}}),
        ScoredRun(
            "lora",
            0,
            {"cer": {"cer": _values(0.1)}, "mos": {"mos": _values(0.1)}},
            params={"rank": 8},
            recipe="spk",
        ),
    ]
    if with_reward:
        runs.append(
            ScoredRun(
                "pref",
                0,
                {"cer": {"cer": _values(0.2)}, "mos": {"mos": _values(0.2)}},
                params={"reward_weights": {"cer": 1.0}, "k": 4},
                recipe="spk",
            )
        )
    return runs


def test_optimised_cells_are_marked_and_explained(tmp_path):
    write_scored_runs(tmp_path, _runs(with_reward=True), suite="marks")
    paths = build_leaderboard(tmp_path, "marks", audio="none")
    md = paths["md"].read_text(encoding="utf-8")
    board = md.split("\n## ")[1]
    rows = {line.split("|")[1].strip(): line for line in board.splitlines() if "| tiny /" in line}
    pref = next(line for label, line in rows.items() if "/ pref" in label)
    cells = [c.strip() for c in pref.split("|")]
    assert sum(MARK in c for c in cells) == 1
    cer_cell = next(c for c in cells if MARK in c)
    assert cer_cell.endswith(f"]{MARK}")  # after the interval of the cer column
    assert not any(MARK in line for label, line in rows.items() if "/ pref" not in label)
    legend = [line for line in md.splitlines() if line.lstrip("- ").startswith(MARK)]
    assert len(legend) == 1 and "also optimised this metric" in legend[0]

    csv = pd.read_csv(paths["csv"])
    assert csv["optimised"].dtype == bool
    marked = csv[csv["optimised"]]
    assert set(marked["metric"]) == {"cer"}
    assert marked["system"].str.contains("pref").all()
    assert set(marked["scope"]) == {"pooled", "seed"}
    html = paths["html"].read_text(encoding="utf-8")
    assert html.count('class="optimised"') == 1
    assert f"<li>{MARK}: the system" in html


def test_without_a_reward_trained_system_nothing_changes(tmp_path):
    write_scored_runs(tmp_path, _runs(with_reward=False), suite="plain")
    paths = build_leaderboard(tmp_path, "plain", audio="none")
    assert MARK not in paths["md"].read_text(encoding="utf-8")
    assert "optimised" not in pd.read_csv(paths["csv"]).columns
    assert 'class="optimised"' not in paths["html"].read_text(encoding="utf-8")


# ------------------------------------------------------------------ a chain through the runner


class RewardParamsDouble(Params):
    init_run: str | None = None
    reward_weights: dict[str, float] = Field(default_factory=lambda: {"double_rms": 1.0})
    target_gain: float = 0.9


class DoubleRewardMethod(Method):
    """Test double: starts from ``init_run``'s saved tone gain and moves it toward a target, as a
    reward on ``double_rms`` (louder) would."""

    name = "double_reward"
    description = "test double: a 'reward-trained' method that can start from another run"
    Params = RewardParamsDouble

    def adapt(self, backbone, data, ctx):
        import torch

        if self.params.init_run:
            gain = float((Path(self.params.init_run) / "adapter" / "gain.txt").read_text())
            with torch.no_grad():
                backbone.module.weight.fill_(gain)
        with torch.no_grad():
            backbone.module.weight += 0.5 * (self.params.target_gain - backbone.module.weight)
        return AdaptResult(trainable_params=1, total_params=1)


@hookimpl
def ttsadapt_register_methods():
    return [DoubleRewardMethod]


def _core_helpers():
    path = Path(__file__).resolve().parents[1] / "core" / "helpers.py"
    spec = importlib.util.spec_from_file_location("ttsadapt_core_test_helpers", path)
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    return helpers


def test_the_leaderboard_shows_base_then_tuned_then_tuned_and_rewarded(tmp_path):
    helpers = _core_helpers()
    manifest = helpers.make_corpus(tmp_path / "corpus")
    methods = (
        '[[methods]]\nname = "double_anchor"\n\n'
        '[[methods]]\nname = "double_nudge"\nparams = { target_gain = [0.5, 0.9] }\n\n'
        '[[methods]]\nname = "double_reward"\nafter = "double_nudge(target_gain=0.5)"\n'
    )
    path = tmp_path / "chain.toml"
    path.write_text(helpers.suite_text(manifest, name="chain", methods=methods))
    registry = build_registry(extra_modules=[helpers.DOUBLES, __name__], autoload=False)
    suite = load_suite(path, registry)
    summary = SuiteRunner(suite, registry, results=tmp_path / "results").run()
    assert summary.counts() == {"ok": 4}, [o.error for o in summary.outcomes]

    paths = build_leaderboard(tmp_path / "results", "chain", audio="none")
    csv = pd.read_csv(paths["csv"])
    pooled = csv[csv["scope"] == "pooled"]
    labels = sorted(set(pooled["system"]))
    chained = "double_tone / double_reward after double_nudge(target_gain=0.5) / spk-a"
    assert chained in labels
    assert "double_tone / double_nudge (target_gain=0.5) / spk-a" in labels
    marked = pooled[pooled["optimised"]]
    assert set(zip(marked["system"], marked["metric"])) == {(chained, "double_rms")}
    md = paths["md"].read_text(encoding="utf-8")
    line = next(x for x in md.splitlines() if x.startswith(f"| {chained}"))
    assert MARK in line
    # the record keeps where the run started
    dep = next(r for r in suite.runs if r.method == "double_reward")
    record = json.loads(
        (
            tmp_path / "results" / "chain" / "runs" / dep.run_id / "records" / "double_rms.json"
        ).read_text()
    )
    assert record["after"]["label"] == "double_nudge(target_gain=0.5)"


@pytest.mark.parametrize("weights", [{"double_rms": 0.0}])
def test_a_zero_weight_is_not_optimised(weights):
    assert optimised_metrics({"reward_weights": weights}) == ()
