"""STOI (Taal et al. 2011): short-time objective intelligibility against a reference recording of
the same utterance, 0-1, higher is better. Computed at 16 kHz input (pystoi resamples to its
10 kHz internally) over the common length of the two signals: STOI compares them frame by frame,
so it is only meaningful when they are time-aligned (e.g. a resynthesis of the reference).
Items without a reference recording are recorded as not applicable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ttsadapt.components import Metric, MetricOutput, Params
from ttsadapt.markers import hookimpl
from ttsadapt.metric_helpers import score_each
from ttsadapt.types import EvalItem, ItemScore

from . import _provenance
from .pesq import reference_pair

SAMPLE_RATE = 16000


class STOI(Metric):
    name = "stoi"
    version = "1"
    description = "STOI intelligibility against a time-aligned reference recording, 0-1."
    outputs = (MetricOutput("stoi", True, (0.0, 1.0), "", "short-time objective intelligibility"),)
    needs_reference_audio = True
    sample_rate = SAMPLE_RATE

    class Params(Params):
        extended: bool = False  # ESTOI (Jensen & Taal 2016) instead of STOI

    def model_provenance(self) -> dict[str, Any]:
        return _provenance.cached(
            self, lambda: _provenance.provenance(_provenance.package_versions("pystoi"), {})
        )

    def score(self, items: Sequence[EvalItem]) -> list[ItemScore]:
        from pystoi import stoi

        def one(item: EvalItem) -> dict[str, float]:
            ref, deg = reference_pair(item, SAMPLE_RATE)
            n = min(ref.size, deg.size)
            value = stoi(ref[:n], deg[:n], SAMPLE_RATE, extended=self.params.extended)
            return {"stoi": float(value)}

        return score_each(items, one)


@hookimpl
def ttsadapt_register_metrics():
    return [STOI]
