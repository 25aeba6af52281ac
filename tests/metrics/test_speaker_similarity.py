import itertools

import numpy as np
import pytest

from ttsadapt.plugins.metrics.speaker_similarity import SpeakerSimilarity
from ttsadapt.types import EvalItem

OTHER_SPEAKERS = ["hts1a", "hts2a", "morig", "forig", "mmt1", "cross", "big_dog"]


@pytest.fixture(scope="module")
def metric():
    m = SpeakerSimilarity()
    m.setup()
    return m


def test_same_speaker_scores_clearly_above_different(metric, librivox, codec2):
    def item(i, a, sr, pa, psr):
        return EvalItem(
            id=i, audio=a, sample_rate=sr, speaker_prompt=pa, speaker_prompt_sample_rate=psr
        )

    same = [
        item(f"{x[0]}~{y[0]}", x[1], x[2], y[1], y[2])
        for x, y in itertools.combinations(librivox[:4], 2)
    ]
    diff = [
        item(f"{x[0]}~{n}", x[1], x[2], *codec2[n]) for x in librivox[:2] for n in OTHER_SPEAKERS
    ]
    s_same = [s.values["cosine_raw"] for s in metric.score(same)]
    s_diff = [s.values["cosine_raw"] for s in metric.score(diff)]
    assert min(s_same) > max(s_diff)
    assert np.mean(s_same) - np.mean(s_diff) > 0.2


def test_outputs_and_missing_prompt(metric, librivox):
    _, a, sr, _ = librivox[0]
    ok, missing = metric.score(
        [
            EvalItem(
                id="self", audio=a, sample_rate=sr, speaker_prompt=a, speaker_prompt_sample_rate=sr
            ),
            EvalItem(id="none", audio=a, sample_rate=sr),
        ]
    )
    assert ok.values["cosine_raw"] == pytest.approx(1.0, abs=1e-4)
    assert ok.values["cosine_01"] == pytest.approx((1 + ok.values["cosine_raw"]) / 2)
    assert missing.error.startswith("missing speaker prompt")


def test_batched_embeddings_equal_resemblyzer_embed_utterance(metric, librivox, codec2):
    from resemblyzer import preprocess_wav

    from ttsadapt.metric_helpers import prepare_audio

    clips = [(a, sr) for _, a, sr, _ in librivox] + [codec2["hts1a"], codec2["forig"]]
    ours = metric.embed_many([(a, sr, "audio") for a, sr in clips])
    for (a, sr), emb in zip(clips, ours):
        ref = metric._encoder.embed_utterance(preprocess_wav(prepare_audio(a, sr, 16000)))
        assert np.abs(emb - ref / np.linalg.norm(ref)).max() < 1e-5


def test_shared_clip_error_names_each_field(metric, librivox):
    _, a, sr, _ = librivox[0]
    short = a[:800]  # 50 ms: too short, used as one item's audio and another's prompt
    as_audio, as_prompt = metric.score(
        [
            EvalItem(
                id="a", audio=short, sample_rate=sr, speaker_prompt=a, speaker_prompt_sample_rate=sr
            ),
            EvalItem(
                id="p", audio=a, sample_rate=sr, speaker_prompt=short, speaker_prompt_sample_rate=sr
            ),
        ]
    )
    assert as_audio.error.startswith("too short: audio")
    assert as_prompt.error.startswith("too short: speaker prompt")


def test_without_the_speaker_extra_the_error_says_what_to_install(monkeypatch):
    import builtins

    from ttsadapt.errors import ConfigError
    from ttsadapt.plugins.metrics import speaker_similarity

    real = builtins.__import__

    def no_resemblyzer(name, *args, **kwargs):
        if name == "resemblyzer":
            raise ImportError("No module named 'resemblyzer'")
        return real(name, *args, **kwargs)

    speaker_similarity._resemblyzer_encoder.cache_clear()  # a cached encoder would hide it
    monkeypatch.setattr(builtins, "__import__", no_resemblyzer)
    with pytest.raises(ConfigError, match=r"ttsadapt\[speaker\]"):
        speaker_similarity._resemblyzer_encoder(None)
