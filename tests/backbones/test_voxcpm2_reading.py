"""The reading levers of the VoxCPM2 reference: phoneme input, the CTC alignment loss, the reading
corpus' text, and a saved phoneme model that loads back reading phonemes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")

from ttsadapt.data import reading  # noqa: E402
from ttsadapt.plugins.backbones.voxcpm2 import VoxCPM2Backbone  # noqa: E402
from ttsadapt.plugins.backbones.voxcpm2._io import base_state_dict  # noqa: E402
from ttsadapt.types import Clip  # noqa: E402

SMALL = {"lm_hidden": 64, "lm_layers": 2, "local_hidden": 64, "head_dim": 32, "fsq_dim": 16}


def _clips(tmp_path: Path) -> list[Clip]:
    from ttsadapt.audio import write_audio
    from ttsadapt.data.engines import engine_available, synthesize

    if not engine_available("espeak-ng"):
        pytest.skip("espeak-ng is not installed")
    texts = ["The cat sat on the mat.", "A dog ran home.", "Good morning to you."]
    clips = []
    for i, text in enumerate(texts):
        audio, sr = synthesize("espeak-ng", "en-us+m1", text)
        write_audio(tmp_path / f"{i}.wav", audio, sr)
        clips.append(Clip(str(i), tmp_path / f"{i}.wav", text, "s", "en"))
    return clips


def _loaded(**params) -> VoxCPM2Backbone:
    backbone = VoxCPM2Backbone(model="tiny", **SMALL, **params)
    backbone.load("cpu")
    return backbone


def test_phoneme_input_reads_ipa_with_the_tag_as_text():
    if not __import__("shutil").which("espeak-ng"):
        pytest.skip("espeak-ng is not installed")
    backbone = _loaded(text_input="phonemes")
    text = backbone._model_text("The cat sat.", "en")
    assert text.startswith("[en] ")
    assert "æ" in text and "cat" not in text
    unk = backbone.tokenizer.convert_tokens_to_ids("<unk>")
    assert unk not in backbone._text_ids(text), "an IPA symbol is missing from the charset"
    # the character model reads the spelling
    assert "cat" in _loaded()._model_text("The cat sat.", "en")


def test_align_loss_is_added_trains_the_lm_and_is_never_saved(tmp_path):
    backbone = _loaded(text_input="phonemes", align_weight=0.5)
    batch = backbone.collate(backbone.prepare(_clips(tmp_path)))
    backbone.module.train()
    parts = backbone.loss(batch)
    assert "loss_align" in parts and torch.isfinite(parts["loss_align"])
    assert parts["loss_align"] > 0
    expected = parts["loss_diff"] + parts["loss_stop"] + 0.5 * parts["loss_align"]
    assert torch.allclose(parts["loss"], expected)
    parts["loss_align"].backward()
    lm_grad = backbone.module.base_lm.layers[0].self_attn.q_proj.weight.grad
    assert lm_grad is not None and lm_grad.abs().sum() > 0, "CTC gradient must reach the LM"
    assert not any(k.startswith("ttsadapt_") for k in base_state_dict(backbone.module))
    # evaluation (validation loss) is the plain upstream loss
    backbone.module.eval()
    with torch.no_grad():
        assert "loss_align" not in backbone.loss(batch)


def test_alignment_walks_the_phonemes_after_the_tag(tmp_path):
    """CTC targets are the text positions after the language tag, in order (1..N), one input
    per target patch; the tag is spoken nowhere and is not aligned."""
    backbone = _loaded(text_input="phonemes", align_weight=1.0)
    clip = _clips(tmp_path)[:1]
    example = backbone.prepare(clip)[0]
    batch = backbone.collate([example])
    captured = {}
    real = torch.nn.functional.ctc_loss

    def spy(log_probs, targets, input_lengths, target_lengths, *args, **kwargs):
        captured.update(
            targets=targets.clone(), inputs=input_lengths.clone(), shape=log_probs.shape
        )
        return real(log_probs, targets, input_lengths, target_lengths, *args, **kwargs)

    backbone.module.train()
    torch.nn.functional.ctc_loss, saved = spy, torch.nn.functional.ctc_loss
    try:
        backbone.loss(batch)
    finally:
        torch.nn.functional.ctc_loss = saved
    phonemes = backbone._model_text(clip[0].text, "en").removeprefix("[en] ")
    n = len(backbone._text_ids(phonemes))
    assert captured["targets"].tolist() == list(range(1, n + 1))
    assert captured["inputs"].tolist() == [example.audio_feats.shape[0]]
    assert captured["shape"][-1] == n + 1  # blank + one column per phoneme token


def test_alignment_prefers_monotonic_attention():
    """The loss is low when attention walks the text in order and high when it walks it
    backwards — it measures alignment, not something the audio history could supply."""
    backbone = _loaded(text_input="phonemes", align_weight=1.0, language_tags=False)
    n_text, n_audio, heads, dim = 5, 10, 2, 8
    tokens = torch.tensor([[7] * n_text + [101] + [0] * n_audio + [102]])
    batch = {
        "text_tokens": tokens,
        "text_mask": (torch.arange(tokens.shape[1]) <= n_text - 1).int()[None]
        | (tokens == 101).int()
        | (tokens == 102).int(),
        "loss_mask": ((tokens == 0) & (torch.arange(tokens.shape[1]) > n_text)).int(),
    }

    def attention(order):
        q = torch.zeros(1, heads, tokens.shape[1], dim)
        k = torch.zeros(1, heads, tokens.shape[1], dim)
        for j in range(n_text):
            k[0, :, j, j] = 1.0
        for t in range(n_audio):
            q[0, :, n_text + t, order[t * n_text // n_audio]] = 40.0
        return q, k

    forward = backbone._align_loss(batch, *attention(list(range(n_text))))
    backward = backbone._align_loss(batch, *attention(list(reversed(range(n_text)))))
    assert forward < 0.5 < backward


def test_phoneme_model_saves_and_loads_back_as_phonemes(tmp_path):
    backbone = _loaded(text_input="phonemes", align_weight=0.5)
    folder = backbone.save_pretrained(tmp_path / "model")
    again = VoxCPM2Backbone(model=str(folder))
    again.load("cpu")
    assert again.phoneme_input
    assert again._text_ids(again._model_text("Hello.", "en")) == backbone._text_ids(
        backbone._model_text("Hello.", "en")
    )


def test_reading_sentences_are_clean_and_never_the_projects_own():
    if not reading.FORTUNE_DIR.is_dir():
        pytest.skip("Debian fortunes are not installed")
    sents = reading.sentences()
    assert len(sents) >= 5000
    own = reading._project_sentences()
    assert not own & {reading._norm(s) for s in sents}
    for s in sents[:500]:
        assert not any(ch.isdigit() for ch in s)
        assert 3 <= len(s.split()) <= 14 and len(s) <= 90
    assert sents == reading.sentences(), "the order must be deterministic"
    assert all(w.endswith(".") and " " not in w for w in reading.words(sents, 50))


def test_reading_voices_leave_out_the_target_voices():
    assert len(reading.VOICES) >= 8
    assert not set(reading.VOICES) & set(reading.TARGET_VOICES)
    assert reading.voice_for("some text") == reading.voice_for("some text")


def test_history_dropout_drops_whole_input_patches_in_training_only(tmp_path):
    backbone = _loaded(history_dropout=0.5)
    seen = []
    backbone.module.feat_encoder.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    feats = torch.ones(2, 40, backbone.module.patch_size, backbone.module.feat_dim)
    backbone.module.train()
    backbone.module.feat_encoder(feats)
    per_patch = seen[-1].abs().sum(dim=(2, 3))
    assert set(per_patch.unique().tolist()) <= {0.0, float(feats[0, 0].numel())}
    assert 0.2 < (per_patch == 0).float().mean() < 0.8
    backbone.module.eval()
    backbone.module.feat_encoder(feats)
    assert torch.equal(seen[-1], feats)


def test_without_the_fortune_files_the_error_says_what_to_install(tmp_path):
    from ttsadapt.errors import DataError

    with pytest.raises(DataError, match="apt-get install fortunes-min fortunes"):
        reading.sentences(tmp_path / "missing")
