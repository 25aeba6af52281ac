"""The ``asr_cer`` filter against the real ``cer`` metric (Whisper tiny.en, offline).

Three short English clips are spoken by espeak-ng; two are labelled with what they say, one with
an unrelated sentence. The matching ones pass; the mismatched one is dropped with its CER.
"""

import re
import shutil

import pytest
import soundfile as sf

from ttsadapt.data.recipes import Recipe, prepare_training_data
from ttsadapt.errors import ConfigError
from ttsadapt.types import Clip

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

SPOKEN = {
    "match-1": ("The boy ran across the field.", "The boy ran across the field."),
    "match-2": ("Please open the window.", "Please open the window."),
    # audio says one thing, the manifest text says another
    "mismatch": ("I like green apples.", "Seven hundred ships sailed north at midnight."),
}


@pytest.fixture(scope="module")
def spoken_clips(tmp_path_factory):
    from ttsadapt.data.engines import synthesize

    root = tmp_path_factory.mktemp("asr")
    clips = []
    for cid, (said, labelled) in SPOKEN.items():
        audio, sr = synthesize("espeak-ng", "en-us+m3", said, rate_wpm=140)
        path = root / f"{cid}.wav"
        sf.write(path, audio, sr, subtype="PCM_16")
        clips.append(Clip(cid, path, labelled, "spk", "en", len(audio) / sr))
    return clips


def _filter(clips, registry, **params):
    cls = registry.get("filter", "asr_cer")
    return cls(**params).apply(clips, {"registry": registry})


def test_matching_clips_pass_mismatch_dropped_with_cer(spoken_clips, registry):
    result = _filter(spoken_clips, registry, max_cer=0.3, metric_params={"model": "tiny.en"})
    assert sorted(c.id for c in result.kept) == ["match-1", "match-2"]
    [(clip, reason)] = result.dropped
    assert clip.id == "mismatch"
    match = re.fullmatch(r"asr_cer: cer (\d+\.\d+) > max_cer=0\.3", reason)
    assert match, reason
    assert float(match.group(1)) > 0.5
    # scores are cached on the clip under a key naming the ASR model, not the default metric's
    assert "cer[model=tiny.en]/cer" in clip.extra["scores"]
    assert "cer/cer" not in clip.extra["scores"]


def test_recipe_carries_metric_params_and_reports_reason(spoken_clips, registry):
    recipe = Recipe(
        name="asr",
        filters=[{"name": "asr_cer", "max_cer": 0.3, "metric_params": {"model": "tiny.en"}}],
        split={"validation_fraction": 0.0},
    )
    prep = prepare_training_data(spoken_clips, recipe, seed=0, registry=registry)
    assert sorted(c.id for c in prep.train) == ["match-1", "match-2"]
    assert [c.id for c, _ in prep.dropped] == ["mismatch"]
    assert "cer" in prep.dropped[0][1]


def test_bad_metric_params_name_the_field(spoken_clips, registry):
    with pytest.raises(ConfigError, match=r"metric_params\.beam_sizee"):
        _filter(spoken_clips, registry, metric_params={"beam_sizee": 2})
