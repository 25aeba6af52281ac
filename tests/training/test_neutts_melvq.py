"""The offline stand-in codec ``mel_vq`` (k-means log-mel + Griffin-Lim) and the tiny NeuTTS
speaking with it: real speech in, intelligible speech out, training and synthesis offline."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import SENTENCES, make_ctx, tiny_neutts

from ttsadapt.audio import load_audio
from ttsadapt.components import TrainingData
from ttsadapt.errors import ConfigError
from ttsadapt.types import Clip, EvalItem, SynthesisRequest

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
HELD_OUT = "sense_and_sensibility_01_austen_64kb-0880"
HELD_OUT_TEXT = "he was not an ill disposed young man"


def _librivox() -> list[Path]:
    wavs = sorted(LIBRIVOX.glob("*.wav"))
    if len(wavs) < 5:
        pytest.skip("pocketsphinx-testdata (Debian) is not installed")
    return wavs


@pytest.fixture(scope="module")
def codec():
    """A 256-code codebook fitted on four LibriVox recordings (the fifth is held out)."""
    from ttsadapt.plugins.backbones.neutts._melvq import MelVQCodec

    audios = [load_audio(w, target_sr=16000)[0] for w in _librivox() if w.stem != HELD_OUT]
    return MelVQCodec.fit(audios, 256, seed=0, source="librivox")


@pytest.fixture
def speech(tmp_path) -> TrainingData:
    clips = []
    for i, text in enumerate(SENTENCES[:6]):
        wav = tmp_path / f"{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
        clips.append(
            Clip(id=f"c{i}", audio=wav, text=text, speaker="s", language="en", split="train")
        )
    return TrainingData(train=clips[:5], validation=clips[5:])


def test_codes_are_50_per_second_and_the_fit_is_deterministic(codec):
    from ttsadapt.plugins.backbones.neutts._melvq import MelVQCodec

    audio, _ = load_audio(LIBRIVOX / f"{HELD_OUT}.wav", target_sr=16000)
    codes = codec.encode(audio)
    assert abs(len(codes) - 50 * len(audio) / 16000) <= 2
    assert len(set(codes)) > 40  # real speech uses many codebook entries
    assert codec.meta["note"].startswith("offline stand-in codec")
    small = [audio[: 16000 * 2]]
    one = MelVQCodec.fit(small, 16, seed=3)
    two = MelVQCodec.fit(small, 16, seed=3)
    np.testing.assert_array_equal(one.centroids, two.centroids)


@pytest.mark.slow
def test_round_trip_of_real_speech_stays_intelligible(codec):
    """Held-out LibriVox speech through encode -> decode: Whisper tiny.en still reads it."""
    from ttsadapt.plugins.metrics.cer import CER

    audio, _ = load_audio(LIBRIVOX / f"{HELD_OUT}.wav", target_sr=16000)
    decoded = codec.decode(codec.encode(audio))
    assert decoded.dtype == np.float32 and np.isfinite(decoded).all()
    assert abs(len(decoded) - len(audio)) < 2 * 320
    metric = CER(model="tiny.en")
    try:
        metric.setup()
    except Exception as exc:  # noqa: BLE001 - the ASR model ships with an optional package
        pytest.skip(f"Whisper tiny.en is not available offline: {exc}")
    scores = metric.score(
        [
            EvalItem(id=name, audio=a, sample_rate=16000, text=HELD_OUT_TEXT, language="en")
            for name, a in (("original", audio), ("mel_vq", decoded))
        ]
    )
    original, coded = (s.values["cer"] for s in scores)
    # measured: CER 0.11 on the original, 0.17 after the codec (0.58 without the smoothing)
    assert coded <= max(0.4, original + 0.25), scores[1].extra["transcript"]


def test_codebook_saves_loads_and_bad_files_are_named(codec, tmp_path):
    from ttsadapt.plugins.backbones.neutts._melvq import MelVQCodec

    path = codec.save(tmp_path)
    again = MelVQCodec.load(tmp_path)
    np.testing.assert_array_equal(again.centroids, codec.centroids)
    assert again.meta == codec.meta
    with pytest.raises(ConfigError, match="codebook not found"):
        MelVQCodec.load(tmp_path / "nowhere")
    path.write_bytes(b"not an npz")
    with pytest.raises(ConfigError, match="unreadable"):
        MelVQCodec.load(path)


def test_too_little_audio_for_the_codebook_says_so():
    from ttsadapt.plugins.backbones.neutts._melvq import MelVQCodec

    with pytest.raises(ConfigError, match="too few for 256 codes"):
        MelVQCodec.fit([np.zeros(1600, dtype=np.float32)], 256)


def test_unfitted_mel_vq_asks_for_training_or_a_codebook():
    backbone = tiny_neutts(codec="mel_vq", mel_vq_codes=64)
    req = [SynthesisRequest(id="a", text="Hello.", language="en", speaker="s")]
    with pytest.raises(ConfigError, match="codec_fit"):
        backbone.synthesize(req, {"max_length": 120})
    with pytest.raises(ConfigError, match="exceeds the LM's codebook_size"):
        tiny_neutts(codec="mel_vq", mel_vq_codes=512)


@pytest.mark.slow
def test_tiny_neutts_trains_and_speaks_offline_with_mel_vq(tmp_path, speech):
    """LoRA on the tiny NeuTTS from raw audio (codes from mel_vq), then synthesis at 24 kHz."""
    from ttsadapt.plugins.methods.lora import Lora

    backbone = tiny_neutts(codec="mel_vq", mel_vq_codes=64, codebook_size=64)
    cfg = dict(lr=3e-3, warmup_steps=1, max_steps=3, batch_size=2, grad_accum=1, save_every=3)
    result = Lora(scope="lm", rank=4, **cfg).adapt(backbone, speech, make_ctx(tmp_path))
    assert result.stats["n_train_examples"] == 5 and result.selected["used"] == 3
    assert (tmp_path / "adapter" / "mel_vq_codebook.npz").is_file()
    req = [SynthesisRequest(id="a", text="Good morning.", language="en", speaker="s")]
    settings = {"min_new_tokens": 20, "max_length": 160}
    import torch

    torch.manual_seed(0)
    (audio,) = backbone.synthesize(req, settings)
    assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()
    torch.manual_seed(0)
    (codes,) = backbone.generate_codes(req, settings)
    assert len(codes) >= 10
    assert abs(len(audio) - len(codes) * backbone.sample_rate // 50) <= 480  # 50 codes a second
    assert np.abs(audio).max() > 1e-4
    # a fresh backbone reads the codebook saved with the adapter and says the same
    fresh = tiny_neutts(
        codec="mel_vq", mel_vq_codes=64, codebook_size=64, codec_repo=str(tmp_path / "adapter")
    )
    fresh.load_adapter(tmp_path / "adapter")
    torch.manual_seed(0)
    (again,) = fresh.synthesize(req, settings)
    np.testing.assert_allclose(again, audio, atol=1e-5)


@pytest.mark.slow
def test_codec_fit_at_load_lets_the_untrained_tiny_model_speak():
    """What the contract test needs: tiny NeuTTS speaking offline with no training."""
    from ttsadapt.plugins.backbones.neutts import NeuTTS
    from ttsadapt.testing import check_backbone

    _librivox()
    params = {
        "model": "tiny",
        "codec": "mel_vq",
        "codec_fit": str(LIBRIVOX),
        "codebook_size": 256,
        "max_length": 200,
    }
    backbone = check_backbone(NeuTTS, params)
    assert backbone._codec.meta["n_recordings"] == 5
