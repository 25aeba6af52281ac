"""Latency of synthesis: the runner's built-in ``latency`` record (a pseudo-metric).

The runner times every ``Backbone.synthesize`` call of the evaluation set and writes, next to the
metrics' records, ``records/latency.json`` and ``scores/latency.jsonl`` (one row per utterance),
so the leaderboard shows latency like any metric: mean, 95 % CI over utterances, Δ to the anchor.
Its outputs, all lower-is-better:

``rtf``
    real-time factor: the utterance's share of its ``synthesize`` call's wall time (the call's time
    divided by the utterances it returned) over the seconds of audio produced.
``first_audio_s``
    time to first audio: the wall time from the ``synthesize`` call that produced the utterance to
    its return. No backbone streams, so this is when the utterance's whole audio is there; with
    ``evaluation.batch_size`` > 1 an utterance waits for its batch (set it to 1 for per-utterance
    latency).
``peak_rss_mb``
    the process's peak resident memory during that call (``VmHWM`` of ``/proc/self/status``, reset
    before each call by writing ``5`` to ``/proc/self/clear_refs``): everything resident, model
    weights included, not an increment. Absent where the peak cannot be reset (non-Linux).
``peak_gpu_mb``
    on CUDA, ``torch.cuda.max_memory_allocated`` during the call (reset before it); absent on CPU.

Timings depend on the machine and on what else runs on it: compare systems of one suite run on
one machine (``provenance`` in each record says which).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from .components import Metric, MetricOutput

LATENCY = "latency"
_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


class LatencyMetric(Metric):
    """Not a registered metric: the runner fills its per-utterance values from synthesis timings."""

    name: ClassVar[str] = LATENCY
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "synthesis latency: real-time factor, time to first audio, peak memory"
    )
    outputs: ClassVar[tuple[MetricOutput, ...]] = (
        MetricOutput("rtf", False, (0.0, 100.0), "×", "wall time / audio duration"),
        MetricOutput("first_audio_s", False, (0.0, 3600.0), "s", "wall time until the audio"),
        MetricOutput("peak_rss_mb", False, (0.0, 1e6), "MB", "process peak resident memory"),
        MetricOutput("peak_gpu_mb", False, (0.0, 1e6), "MB", "peak CUDA memory allocated"),
    )

    def score(self, items):  # pragma: no cover - values come from the runner's timings
        raise NotImplementedError("latency is measured by the runner, not scored")


def _vm_hwm_mb() -> float | None:
    try:
        with open(_STATUS, encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _cuda(device: str) -> Any:
    if not str(device).startswith("cuda"):
        return None
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    return torch.cuda if torch.cuda.is_available() else None


@dataclass
class CallLatency:
    """What one ``synthesize`` call cost."""

    wall_s: float = 0.0
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None


class measure:
    """``with measure(device) as cost: backbone.synthesize(...)`` fills ``cost`` on exit."""

    def __init__(self, device: str = "cpu") -> None:
        self.cost = CallLatency()
        self._cuda = _cuda(device)
        self._rss_reset = False
        self._t = 0.0

    def __enter__(self) -> CallLatency:
        if self._cuda is not None:
            self._cuda.synchronize()
            self._cuda.reset_peak_memory_stats()
        self._rss_reset = _reset_peak_rss()
        self._t = time.perf_counter()
        return self.cost

    def __exit__(self, *exc: Any) -> None:
        if self._cuda is not None:
            self._cuda.synchronize()
        self.cost.wall_s = time.perf_counter() - self._t
        if self._rss_reset:
            self.cost.peak_rss_mb = _vm_hwm_mb()
        if self._cuda is not None:
            self.cost.peak_gpu_mb = self._cuda.max_memory_allocated() / 2**20


def latency_values(row: dict[str, Any]) -> dict[str, float]:
    """The latency outputs of one ``synthesis.jsonl`` row (those that were measured)."""
    out = {}
    for key in ("rtf", "first_audio_s", "peak_rss_mb", "peak_gpu_mb"):
        value = row.get(key)
        if value is not None:
            out[key] = float(value)
    return out
