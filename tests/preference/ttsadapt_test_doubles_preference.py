"""Test doubles for the preference tests: cheap metrics a reward can name, and a fast stand-in
decoder for the tiny NeuTTS (its codes become tones whose loudness rises with the code).

Every ``score`` call is appended to :data:`CALLS` as ``(metric name, number of items)``."""

from __future__ import annotations

import numpy as np

from ttsadapt.components import Metric, MetricOutput, Params
from ttsadapt.markers import hookimpl
from ttsadapt.metric_helpers import score_each
from ttsadapt.types import ItemScore

CALLS: list[tuple[str, int]] = []
SAMPLES_PER_CODE = 480  # 20 ms at 24 kHz, as NeuCodec's 50 codes a second


def tone_decoder(n_codes: int, sample_rate: int = 24000):
    """``codes -> audio``: each code 20 ms of a 220 Hz tone at -40 dBFS (code 0) .. 0 dBFS."""
    t = np.arange(SAMPLES_PER_CODE) / sample_rate
    wave = np.sqrt(2.0) * np.sin(2 * np.pi * 220.0 * t)

    def decode(codes):
        level = -40.0 + 40.0 * np.asarray(codes, dtype=np.float64) / max(n_codes - 1, 1)
        gains = 10.0 ** (level / 20.0)
        return (gains[:, None] * wave[None, :]).reshape(-1).astype(np.float32) * 0.99

    return decode


def rms_db(audio) -> float:
    a = np.asarray(audio, dtype=np.float64)
    return float(20 * np.log10(np.sqrt(np.mean(a**2)) + 1e-12)) if a.size else -120.0


class PrefLoudness(Metric):
    name = "pref_loudness"
    description = "test double: RMS level in dBFS (louder is better)"
    outputs = (MetricOutput("rms_db", True, (-120.0, 0.0), "dB"),)

    def score(self, items):
        CALLS.append((self.name, len(items)))
        return score_each(items, lambda it: {"rms_db": rms_db(it.audio)})


class PrefCer(Metric):
    """A pretend ASR error: ``cer_raw`` = the clip's duration in seconds (so > 1 for long ones)."""

    name = "pref_cer"
    description = "test double: duration posing as a character error rate"
    outputs = (
        MetricOutput("cer", False, (0.0, 1.0)),
        MetricOutput("cer_raw", False, (0.0, np.inf)),
    )
    needs_text = True

    class Params(Params):
        model: str = "judge"

    def score(self, items):
        CALLS.append((self.name, len(items)))

        def one(it):
            raw = it.audio.size / it.sample_rate
            return {"cer": min(raw, 1.0), "cer_raw": raw}

        return score_each(items, one)


class PrefRefQuality(Metric):
    name = "pref_ref_quality"
    description = "test double: an intrusive quality (needs the reference recording)"
    outputs = (MetricOutput("q", True, (0.0, 1.0)),)
    needs_reference_audio = True

    def score(self, items):
        CALLS.append((self.name, len(items)))
        out = []
        for it in items:
            if it.reference_audio is None:
                out.append(ItemScore(it.id, error="not applicable: no reference recording"))
            else:
                out.append(ItemScore(it.id, {"q": 0.8}))
        return out


class PrefNoRefQuality(Metric):
    name = "pref_noref_quality"
    description = "test double: a non-intrusive quality"
    outputs = (MetricOutput("q", True, (0.0, 1.0)),)

    def score(self, items):
        CALLS.append((self.name, len(items)))
        return score_each(items, lambda it: {"q": 0.2})


@hookimpl
def ttsadapt_register_metrics():
    return [PrefLoudness, PrefCer, PrefRefQuality, PrefNoRefQuality]
