"""The NeuTTS backbone: prompt format, label masking, decoding, codec errors, local folders."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import CODEBOOK, codes_for, make_clip, tiny_neutts

from ttsadapt.errors import ConfigError
from ttsadapt.types import SynthesisRequest


def test_prompt_follows_the_upstream_format():
    backbone = tiny_neutts()
    clip = make_clip(0, "Hello world.")
    (example,) = backbone.prepare([clip])
    text = backbone.tokenizer.decode(example["input_ids"])
    phones = backbone.phonemes("Hello world.")
    assert phones == "həlˈoʊ wˈɜːld."
    codes = "".join(f"<|speech_{c}|>" for c in codes_for("Hello world."))
    assert text == (
        f"user: Convert the text to speech:<|TEXT_PROMPT_START|>{phones}<|TEXT_PROMPT_END|>"
        f"\nassistant:<|SPEECH_GENERATION_START|>{codes}<|SPEECH_GENERATION_END|>"
    )
    assert backbone.token_count("Hello world.") == len(phones)


def test_labels_cover_speech_only_and_never_padding():
    backbone = tiny_neutts()
    short, long = backbone.prepare(
        [make_clip(0, "Hi."), make_clip(1, "A much longer sentence with many words in it.")]
    )
    batch = backbone.collate([short, long])
    labels, ids, mask = batch["labels"], batch["input_ids"], batch["attention_mask"]
    n = len(short["input_ids"])
    assert (labels[0, n:] == -100).all() and (mask[0, n:] == 0).all()
    start = short["label_start"]
    assert ids[0, start] == backbone.ids.speech_start
    assert (labels[0, :start] == -100).all()
    assert torch.equal(labels[0, start:n], ids[0, start:n])
    assert labels[0, n - 1] == backbone.ids.speech_end  # the model learns to stop


def test_bad_clips_are_skipped_with_reasons():
    backbone = tiny_neutts()
    bad_range = make_clip(1, "Out of range.")
    bad_range.extra["codes"] = [CODEBOOK + 5]
    no_codes = make_clip(2, "No codes.")
    no_codes.extra = {}
    examples = backbone.prepare([make_clip(0, "Fine."), bad_range, no_codes])
    assert [e["id"] for e in examples] == ["train000"]
    reasons = dict(backbone.prepare_errors)
    assert "outside 0..255" in reasons["train001"]
    assert "no pre-encoded `codes`" in reasons["train002"]


def test_scopes_name_the_attention_projections():
    backbone = tiny_neutts()
    lm = backbone.target_modules("lm")
    assert len(lm) == 8 and lm[0] == "model.layers.0.self_attn.q_proj"
    assert backbone.target_modules("all") == lm
    with pytest.raises(ConfigError, match="unknown scope"):
        backbone.target_modules("dit")


def test_sampling_is_seeded_and_settings_change_it():
    backbone = tiny_neutts()
    req = [SynthesisRequest(id="a", text="Good morning.", language="en", speaker="s")]
    settings = {"min_new_tokens": 12, "max_length": 140}
    torch.manual_seed(1)
    first = backbone.generate_codes(req, settings)[0]
    torch.manual_seed(1)
    again = backbone.generate_codes(req, settings)[0]
    assert first == again and len(first) >= 12
    torch.manual_seed(1)
    greedy_ish = backbone.generate_codes(req, dict(settings, top_k=1))[0]
    assert greedy_ish != first
    with pytest.raises(ConfigError, match="unknown neutts decoding settings"):
        backbone.generate_codes(req, {"cfg_value": 2.0})


def test_synthesis_without_codec_fails_clearly():
    backbone = tiny_neutts()
    req = [SynthesisRequest(id="a", text="Hello.", language="en", speaker="s")]
    with pytest.raises(ConfigError, match="without a codec"):
        backbone.synthesize(req)
    needs_pkg = tiny_neutts(codec="neucodec")
    with pytest.raises(ConfigError, match="neucodec"):
        needs_pkg.synthesize(req)


def test_local_folder_round_trip_and_mismatched_config(tmp_path):
    backbone = tiny_neutts()
    backbone.save_model(tmp_path / "m")
    again = tiny_neutts(model=str(tmp_path / "m"))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(
            again.module(input_ids=ids).logits, backbone.module(input_ids=ids).logits
        )
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["hidden_size"] = 128
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"do not match|mismatch|size"):
        tiny_neutts(model=str(tmp_path / "m"))
    with pytest.raises(ConfigError, match=r"no config\.json"):
        tiny_neutts(model=str(tmp_path))


def test_a_batch_of_requests_is_one_generate_call_and_equals_one_by_one_greedy():
    """Left-padded batching must not change what each prompt gets (greedy: top_k = 1)."""
    backbone = tiny_neutts()
    texts = ["Good morning.", "A much longer sentence than the first one.", "Hi."]
    reqs = [
        SynthesisRequest(id=str(i), text=t, language="en", speaker="s") for i, t in enumerate(texts)
    ]
    settings = {"min_new_tokens": 8, "max_length": 160, "top_k": 1}
    calls = []
    real = backbone.module.generate

    def counting(*args, **kwargs):
        calls.append(args[0].shape[0])
        return real(*args, **kwargs)

    backbone.module.generate = counting
    together = backbone.generate_codes(reqs, settings)
    assert calls == [3]
    alone = [backbone.generate_codes([r], settings)[0] for r in reqs]
    assert together == alone
    calls.clear()
    backbone.generate_codes(reqs, dict(settings, batch_size=2))
    assert calls == [2, 1]
