"""VoxCPM2 configurations (tiny offline, full-size) and the character tokenizer built on the spot.

The configs are plain dicts in the layout of VoxCPM2's ``config.json`` (validated into
``voxcpm``'s ``VoxCPMConfig`` by the loader), so a tiny model saved by ttsadapt is a folder in the
upstream layout.
"""

from __future__ import annotations

import string
from typing import Any, ClassVar

ARCHITECTURE = "voxcpm2"

# Token ids below this are reserved: VoxCPM2 hard-codes 101..104 as audio start/end and
# reference-audio start/end, and 0 pads the text track.
RESERVED_IDS = 128
UNK, BOS, EOS = "<unk>", "<s>", "</s>"
# config.json key saying what the tokenizer reads ({"input": "characters" | "phonemes"})
TEXT_KEY = "ttsadapt_text"


def _rope(head_dim: int, max_pos: int) -> dict[str, Any]:
    half = head_dim // 2
    return {
        "type": "longrope",
        "long_factor": [1.0] * half,
        "short_factor": [1.0] * half,
        "original_max_position_embeddings": max_pos,
    }


def _lm_config(
    *,
    hidden: int,
    layers: int,
    heads: int,
    kv_heads: int,
    kv_channels: int,
    ffn: int,
    vocab: int,
    max_pos: int,
) -> dict[str, Any]:
    head_dim = kv_channels
    return {
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "max_position_embeddings": max_pos,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "rms_norm_eps": 1e-5,
        "rope_scaling": _rope(head_dim, max_pos),
        "vocab_size": vocab,
        "use_mup": False,
        "scale_emb": 12.0,
        "dim_model_base": 256,
        "scale_depth": 1.4,
        "rope_theta": 10000.0,
        "kv_channels": kv_channels,
        "no_rope": False,
    }


def _cfm() -> dict[str, Any]:
    return {
        "sigma_min": 1e-6,
        "solver": "euler",
        "t_scheduler": "log-norm",
        "training_cfg_rate": 0.1,
        "inference_cfg_rate": 1.0,
        "reg_loss_type": "l1",
    }


def tiny_config(
    *,
    vocab_size: int,
    feat_dim: int,
    lm_hidden: int = 192,
    lm_layers: int = 3,
    lm_kv_heads: int = 2,
    residual_layers: int = 1,
    local_hidden: int = 128,
    local_layers: int = 1,
    head_dim: int = 32,
    patch_size: int = 4,
    fsq_dim: int = 64,
    max_length: int = 2048,
) -> dict[str, Any]:
    """A VoxCPM2 small enough to train and speak on a 2-core CPU (a few million parameters).

    One ``head_dim`` serves every transformer: voxcpm derives the local modules' configs from the
    LM's (RoPE factors included), so their head sizes must agree, as in the full model (128).
    """
    for label, width in (("lm_hidden", lm_hidden), ("local_hidden", local_hidden)):
        if width % head_dim:
            raise ValueError(f"{label}={width} must be a multiple of head_dim={head_dim}")
    lm_heads = lm_hidden // head_dim
    if lm_heads % lm_kv_heads:
        raise ValueError(f"lm heads ({lm_heads}) must be a multiple of lm_kv_heads={lm_kv_heads}")
    lm = _lm_config(
        hidden=lm_hidden,
        layers=lm_layers,
        heads=lm_heads,
        kv_heads=lm_kv_heads,
        kv_channels=head_dim,
        ffn=lm_hidden * 3,
        vocab=vocab_size,
        max_pos=max_length,
    )
    local = {
        "hidden_dim": local_hidden,
        "ffn_dim": local_hidden * 3,
        "num_heads": local_hidden // head_dim,
        "num_layers": local_layers,
        "kv_channels": head_dim,
    }
    return {
        "architecture": ARCHITECTURE,
        "lm_config": lm,
        "patch_size": patch_size,
        "feat_dim": feat_dim,
        "residual_lm_num_layers": residual_layers,
        "residual_lm_no_rope": True,
        "scalar_quantization_latent_dim": fsq_dim,
        "scalar_quantization_scale": 9,
        "encoder_config": dict(local),
        "dit_config": {**local, "dit_mean_mode": False, "cfm_config": _cfm()},
        "audio_vae_config": None,
        "max_length": max_length,
        "device": "cpu",
        "dtype": "float32",
    }


def full_config(*, max_length: int = 8192, feat_dim: int = 64) -> dict[str, Any]:
    """The full-size VoxCPM2 shape (public ``config.json`` and the VoxCPM2 report).

    MiniCPM-4 LM: 28 layers, hidden 2048, 16 heads, 2 key/value heads, kv_channels 128,
    intermediate 6144, vocabulary 73,448; residual LM 8 layers without RoPE; LocEnc and LocDiT
    1024 wide, 12 layers, 16 heads (2 key/value heads), kv_channels 128; FSQ 512 (scale 9);
    patch 4; feature dim 64.
    """
    lm = _lm_config(
        hidden=2048,
        layers=28,
        heads=16,
        kv_heads=2,
        kv_channels=128,
        ffn=6144,
        vocab=73448,
        max_pos=32768,
    )
    local = {
        "hidden_dim": 1024,
        "ffn_dim": 4096,
        "num_heads": 16,
        "num_layers": 12,
        "kv_channels": 128,
    }
    return {
        "architecture": ARCHITECTURE,
        "lm_config": lm,
        "patch_size": 4,
        "feat_dim": feat_dim,
        "residual_lm_num_layers": 8,
        "residual_lm_no_rope": True,
        "scalar_quantization_latent_dim": 512,
        "scalar_quantization_scale": 9,
        "encoder_config": dict(local),
        "dit_config": {**local, "dit_mean_mode": False, "cfm_config": _cfm()},
        "audio_vae_config": None,
        "max_length": max_length,
        "device": "cuda",
        "dtype": "bfloat16",
    }


def default_charset() -> list[str]:
    """Characters of the tiny tokenizer: printable ASCII, Latin-1 and Latin Extended-A letters,
    common punctuation. Fixed and ordered, so every build gives the same ids."""
    chars: list[str] = [" "]
    chars += [c for c in string.printable if c not in string.whitespace]
    chars += [chr(i) for i in range(0xA1, 0x180) if chr(i).isprintable()]
    chars += list("‘’“”–—…«»")
    seen: set[str] = set()
    return [c for c in chars if not (c in seen or seen.add(c))]


def phoneme_charset() -> list[str]:
    """The character set plus the IPA symbols espeak-ng writes (IPA extensions, spacing modifier
    letters, combining diacritics, phonetic extensions, the Greek letters IPA borrows)."""
    chars = default_charset()
    blocks = [(0x250, 0x2B0), (0x2B0, 0x300), (0x300, 0x370), (0x1D00, 0x1DC0)]
    for lo, hi in blocks:
        chars += [chr(i) for i in range(lo, hi)]
    chars += list("βθχ")
    return list(dict.fromkeys(chars))  # first occurrence wins: fixed ids


def build_char_tokenizer(charset: list[str] | None = None):
    """A character-level ``PreTrainedTokenizerFast`` made offline. Ids < ``RESERVED_IDS`` are
    special/reserved (VoxCPM2's audio markers 101..104 among them); unknown characters map to
    ``<unk>``. It saves/loads with ``save_pretrained``/``AutoTokenizer.from_pretrained``."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {UNK: 0, BOS: 1, EOS: 2}
    for i in range(3, RESERVED_IDS):
        vocab[f"<reserved_{i}>"] = i
    for ch in charset or default_charset():
        if ch not in vocab:
            vocab[ch] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=UNK, bos_token=BOS, eos_token=EOS
    )


class MetaTokenizer:
    """Stand-in tokenizer for building a model on the meta device: only ``vocab`` is read."""

    vocab: ClassVar[dict[str, int]] = {}
