"""ttsadapt: an open benchmark for adapting text-to-speech models.

The host (this package) discovers pluggy plugins that provide backbones, adaptation methods,
metrics and data filters, runs benchmark suites, and writes comparable leaderboards.

``ttsadapt.load_results(PATH_OR_SUITE)`` reads a suite's results into a tidy pandas DataFrame
(one row per run x metric x output; see :mod:`ttsadapt.results_table`). It is imported on first
use, so ``import ttsadapt`` stays light.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_results"]


def __getattr__(name: str) -> Any:
    if name == "load_results":
        from .results_table import load_results

        return load_results
    raise AttributeError(f"module 'ttsadapt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "load_results"])
