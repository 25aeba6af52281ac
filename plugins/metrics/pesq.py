"""PESQ (ITU-T P.862): intrusive speech quality against a reference recording of the same
utterance (``EvalItem.reference_audio``). Wide-band (P.862.2, 16 kHz) by default, narrow-band
(P.862.1, 8 kHz) with ``mode="nb"``; both signals are resampled to the mode's rate. Items without a
reference recording are recorded as not applicable, never as a score of zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from ttsadapt.components import Metric, MetricOutput, Params
from ttsadapt.errors import ItemError
from ttsadapt.markers import hookimpl
from ttsadapt.metric_helpers import NOT_APPLICABLE_NO_REFERENCE, prepare_audio, score_each
from ttsadapt.types import EvalItem, ItemScore

from . import _provenance

RATE = {"wb": 16000, "nb": 8000}


def reference_pair(item: EvalItem, rate: int):
    """(reference, degraded) at ``rate``; raises the not-applicable reason without a reference."""
    if item.reference_audio is None:
        raise ItemError(NOT_APPLICABLE_NO_REFERENCE)
    ref = prepare_audio(
        item.reference_audio, item.reference_sample_rate, rate, what="reference recording"
    )
    deg = prepare_audio(item.audio, item.sample_rate, rate)
    return ref, deg


class PESQ(Metric):
    name = "pesq"
    version = "1"
    description = "PESQ MOS-LQO against a reference recording (wide-band 16 kHz by default)."
    outputs = (
        MetricOutput("pesq", True, (1.0, 4.65), "MOS-LQO", "P.862.2 (wb) or P.862.1 (nb) score"),
    )
    needs_reference_audio = True
    sample_rate = 16000

    class Params(Params):
        mode: Literal["wb", "nb"] = "wb"

    def model_provenance(self) -> dict[str, Any]:
        return _provenance.cached(
            self, lambda: _provenance.provenance(_provenance.package_versions("pesq"), {})
        )

    def score(self, items: Sequence[EvalItem]) -> list[ItemScore]:
        from pesq import PesqError, pesq

        rate = RATE[self.params.mode]

        def one(item: EvalItem) -> dict[str, float]:
            ref, deg = reference_pair(item, rate)
            try:
                return {"pesq": float(pesq(rate, ref, deg, self.params.mode))}
            except PesqError as exc:
                raise ItemError(f"pesq failed: {type(exc).__name__}: {exc}") from exc

        return score_each(items, one)


@hookimpl
def ttsadapt_register_metrics():
    return [PESQ]
