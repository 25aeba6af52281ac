"""Where ttsadapt keeps what it can rebuild: corpora, assembled models, the score cache."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$TTSADAPT_CACHE``, else ``~/.cache/ttsadapt``."""
    env = os.environ.get("TTSADAPT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ttsadapt"


def score_cache_dir() -> Path:
    """The metric score cache shared by suites and ``ttsadapt score``."""
    return cache_root() / "scores"
