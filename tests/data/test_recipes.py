"""Recipes: filters with reasons, stable splits, upsampling, mixes, replay, tags, determinism."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from ttsadapt.data.manifest import load_manifest
from ttsadapt.data.recipes import Recipe, prepare_training_data, recipe_from_table
from ttsadapt.errors import ConfigError
from ttsadapt.types import Clip


def _clips(n: int, language: str, speaker: str, duration: float = 2.0, text: str = "a b c"):
    return [
        Clip(
            f"{speaker}-{language}-{i}",
            Path(f"/x/{speaker}{i}.wav"),
            text,
            speaker,
            language,
            duration,
        )
        for i in range(n)
    ]


def _hours(clips, language=None):
    return sum(c.duration_s for c in clips if language is None or c.language == language) / 3600


def test_split_is_per_language_stable_and_90_10(registry):
    clips = _clips(100, "en", "a") + _clips(40, "km", "b")
    prep = prepare_training_data(clips, Recipe(name="r"), seed=1, registry=registry)
    assert len(prep.validation) == 14 and len(prep.train) == 126
    assert sum(c.language == "km" for c in prep.validation) == 4
    # the split does not depend on the run seed, and adding clips keeps earlier choices mostly
    other = prepare_training_data(clips, Recipe(name="r"), seed=2, registry=registry)
    assert [c.id for c in other.validation] == [c.id for c in prep.validation]


def test_speaker_disjoint_split(registry):
    clips = [c for s in "abcdefghij" for c in _clips(10, "en", s)]
    recipe = Recipe(name="r", split={"speaker_disjoint": True})
    prep = prepare_training_data(clips, recipe, seed=0, registry=registry)
    assert {c.speaker for c in prep.train}.isdisjoint({c.speaker for c in prep.validation})
    assert len({c.speaker for c in prep.validation}) == 1


def test_upsample_weak_language_to_40_percent_validation_natural(registry):
    clips = _clips(180, "en", "a") + _clips(20, "km", "b")
    recipe = Recipe(name="r", upsample={"km": 0.4}, language_tags=True)
    prep = prepare_training_data(clips, recipe, seed=3, registry=registry)
    share = _hours(prep.train, "km") / _hours(prep.train)
    assert share == pytest.approx(0.4, abs=0.01)
    val_share = _hours(prep.validation, "km") / _hours(prep.validation)
    assert val_share == pytest.approx(0.1, abs=0.02)  # natural ratio kept
    assert prep.report["upsample"]["km"]["factor"] > 5
    assert all(c.text.startswith(f"[{c.language}] ") for c in prep.train + prep.validation)
    again = prepare_training_data(clips, recipe, seed=3, registry=registry)
    assert [c.id for c in again.train] == [c.id for c in prep.train]
    json.dumps(prep.report)  # provenance must be plain data


def test_mix_hours_per_speaker_and_shares(registry):
    clips = [
        c for s in ("a", "b", "c", "d") for c in _clips(400, "en", s, duration=36.0)
    ]  # 4 h each
    recipe = Recipe(
        name="2+2+2", mix={"hours": {"a": 2, "b": 2, "c": 2}}, split={"validation_fraction": 0}
    )
    prep = prepare_training_data(clips, recipe, seed=0, registry=registry)
    for spk in "abc":
        h = sum(c.duration_s for c in prep.train if c.speaker == spk) / 3600
        assert h == pytest.approx(2.0, abs=0.011)
    assert not any(c.speaker == "d" for c in prep.train)
    shares = Recipe(
        name="mix", mix={"shares": {"a": 2 / 9, "b": 1 / 9}}, split={"validation_fraction": 0}
    )
    prep = prepare_training_data(clips, shares, seed=0, registry=registry)
    ha = sum(c.duration_s for c in prep.train if c.speaker == "a") / 3600
    hb = sum(c.duration_s for c in prep.train if c.speaker == "b") / 3600
    assert ha == pytest.approx(4 * 2 / 9, abs=0.011) and hb == pytest.approx(4 / 9, abs=0.011)
    other_seed = prepare_training_data(clips, shares, seed=1, registry=registry)
    assert {c.id for c in other_seed.train} != {c.id for c in prep.train}


def test_replay_mix_upsamples_target(tmp_path, make_wav, registry):
    lines = []
    for i in range(30):
        make_wav(f"r/{i}.wav", seconds=2.0, seed=i)
        lines.append(
            json.dumps(
                {"audio": f"r/{i}.wav", "text": "replay", "speaker": "pre", "language": "en"}
            )
        )
    (tmp_path / "replay.jsonl").write_text("\n".join(lines) + "\n")
    target = _clips(10, "en", "t", duration=2.0)
    recipe = Recipe(
        name="grpo",
        split={"validation_fraction": 0},
        replay={
            "manifest": str(tmp_path / "replay.jsonl"),
            "target_upsample": 5,
            "replay_fraction": 0.2,
        },
    )
    prep = prepare_training_data(target, recipe, seed=0, registry=registry)
    assert sum(c.speaker == "t" for c in prep.train) == 50
    # a fifth of the final mix: 100 s of target -> 25 s of replay, drawn in whole 2 s clips
    replay_s = sum(c.duration_s for c in prep.train if c.speaker == "pre")
    assert 25.0 <= replay_s < 27.0
    assert all(c.id.startswith("replay:") for c in prep.train if c.speaker == "pre")
    assert prep.report["replay"]["target_upsample"] == 5


def test_filters_drop_with_reasons(small_corpus, registry):
    clips = load_manifest(small_corpus).clips
    recipe = Recipe(
        name="f",
        filters=[
            {"name": "duration", "min_s": 0.5, "max_s": 3.6},
            {"name": "max_tokens", "max_tokens": 53},
            {"name": "speaker_energy_std", "min_energy_std_db": 11.0},
        ],
    )
    prep = prepare_training_data(clips, recipe, seed=0, registry=registry)
    reasons = prep.report["dropped_by_reason"]
    assert reasons.get("duration", 0) > 0 and reasons.get("max_tokens", 0) > 0
    assert "UTF-8 bytes" in next(r for _, r in prep.dropped if r.startswith("max_tokens"))
    assert reasons.get("speaker_energy_std", 0) > 0
    assert {c.speaker for c in prep.train} == {"varied"}  # the steady speaker is too flat
    assert prep.report["excluded_by_reason"]["eval split (held out)"] == 6
    n_in = sum(c.split != "eval" for c in clips)
    assert len(prep.train) + len(prep.validation) + len(prep.dropped) == n_in
    # a tokenizer from the backbone replaces the fallback
    prep2 = prepare_training_data(
        clips,
        Recipe(name="t", filters=[{"name": "max_tokens", "max_tokens": 5}]),
        0,
        registry,
        filter_context={"token_count": lambda s: len(s.split())},
    )
    assert all("tokens >" in r for _, r in prep2.dropped)


def test_recipe_errors_name_the_field(registry):
    with pytest.raises(ValidationError) as exc:
        Recipe.model_validate({"name": "x", "split": {"validation_fraction": 2}})
    assert "split.validation_fraction" in str(exc.value).replace("\n", ".").replace(" ", "") or (
        exc.value.errors()[0]["loc"] == ("split", "validation_fraction")
    )
    with pytest.raises(ConfigError, match=r"data\.upsample: .*target share"):
        recipe_from_table({"name": "x", "upsample": {"km": 1.4}})
    with pytest.raises(ConfigError, match=r"data\.bogus"):
        recipe_from_table({"name": "x", "bogus": 1})
    with pytest.raises(ConfigError, match=r"filters\[0\] \(duration\)\.min_s"):
        prepare_training_data(
            _clips(3, "en", "a"),
            Recipe(name="x", filters=[{"name": "duration", "min_s": -1}]),
            0,
            registry,
        )
