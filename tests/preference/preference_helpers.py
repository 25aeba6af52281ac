"""Helpers of the preference tests: a tiny NeuTTS that speaks through a fast tone decoder and a
run context (a uniquely named module, so it never shadows another folder's conftest)."""

from __future__ import annotations

import logging
from pathlib import Path

from ttsadapt.components import RunContext

DOUBLES = "ttsadapt_test_doubles_preference"
CODEBOOK = 256


class _Bar:
    def __init__(self, total=None, desc=None):
        self.n = 0

    def update(self, n=1):
        self.n += n

    def set_postfix(self, postfix, refresh=True):
        pass

    def close(self):
        pass


def tiny_neutts(**overrides):
    """A tiny NeuTTS whose codes decode to tones (see the doubles); no codec weights needed."""
    from ttsadapt_test_doubles_preference import tone_decoder

    from ttsadapt.plugins.backbones.neutts import NeuTTS

    params = {
        "model": "tiny",
        "codec": "none",
        "codebook_size": CODEBOOK,
        "tiny_hidden": 32,
        "min_new_tokens": 0,
        "max_length": 80,
        "top_k": 0,
    }
    params.update(overrides)
    backbone = NeuTTS(**params)
    backbone.load("cpu")
    backbone.decode_codes = tone_decoder(CODEBOOK)  # instance attribute: the stand-in codec
    return backbone


def make_ctx(run_dir: Path, registry=None, seed: int = 0) -> RunContext:
    return RunContext(
        run_dir=Path(run_dir),
        seed=seed,
        device="cpu",
        logger=logging.getLogger("ttsadapt.test.preference"),
        progress=_Bar,
        hooks=registry.pm.hook if registry is not None else None,
    )
