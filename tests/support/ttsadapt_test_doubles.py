"""Test doubles: tiny, fast components used only by the core's tests (never by a suite a user runs).

They exercise the host (runner, store, resume, leaderboard wiring) without training real models.
Behaviour is controlled by parameters so tests can make a run fail, a clip fail, or a run slow.
"""

from __future__ import annotations

import time

import numpy as np

from ttsadapt.components import (
    AdaptResult,
    Backbone,
    CheckpointInfo,
    Method,
    Metric,
    MetricOutput,
    Params,
)
from ttsadapt.markers import hookimpl
from ttsadapt.types import ItemScore


class ToneBackboneParams(Params):
    f0_hz: float = 150.0
    fail_on_text: str | None = None  # synthesis raises for texts containing this
    sleep_s: float = 0.0


class DoubleToneBackbone(Backbone):
    """Speaks a harmonic tone whose length follows the text; its 'gain' is its one trainable weight."""

    name = "double_tone"
    description = "test double: a harmonic tone generator with one trainable gain"
    Params = ToneBackboneParams
    sample_rate = 16000

    def load(self, device: str = "cpu") -> None:
        import torch

        self.module = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.constant_(self.module.weight, 0.3)

    def target_modules(self, scope: str) -> list[str]:
        return [""]

    def synthesize(self, requests, settings=None):
        out = []
        gain = float(self.module.weight.detach().abs().item())
        for r in requests:
            if self.params.fail_on_text and self.params.fail_on_text in r.text:
                raise RuntimeError(f"cannot speak {r.text!r}")
            time.sleep(self.params.sleep_s)
            n = int(self.sample_rate * (0.3 + 0.05 * len(r.text)))
            t = np.arange(n) / self.sample_rate
            tone = sum(np.sin(2 * np.pi * self.params.f0_hz * k * t) / k for k in range(1, 6))
            env = 0.5 * (1 - np.cos(2 * np.pi * 3 * t))
            out.append((gain * tone * env / 3).astype(np.float32))
        return out

    def save_adapter(self, path):
        from pathlib import Path

        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "gain.txt").write_text(str(float(self.module.weight.item())))


class NudgeParams(Params):
    steps: int = 3
    target_gain: float = 0.8
    fail: bool = False
    sleep_s: float = 0.0


class DoubleNudgeMethod(Method):
    """'Trains' the tone's gain toward a target in a few steps, logging a loss curve."""

    name = "double_nudge"
    description = "test double: moves the tone gain toward target_gain"
    Params = NudgeParams

    def adapt(self, backbone, data, ctx):
        if self.params.fail:
            raise RuntimeError("double_nudge was told to fail")
        w = backbone.module.weight
        curves, checkpoints = [], []
        for step in range(1, self.params.steps + 1):
            time.sleep(self.params.sleep_s)
            with __import__("torch").no_grad():
                w += 0.5 * (self.params.target_gain - w)
            loss = float((self.params.target_gain - w).abs().item())
            curves.append({"step": step, "train_loss": loss, "val_loss": loss * 1.1})
            dev = ctx.dev_score(backbone) if ctx.dev_score else None
            checkpoints.append(CheckpointInfo(step, f"step-{step}", loss * 1.1, dev))
        return AdaptResult(
            trainable_params=1,
            total_params=1,
            curves=curves,
            checkpoints=checkpoints,
            selected={"by_val_loss": checkpoints[-1].step, "by_dev_metric": checkpoints[-1].step},
            stats={"train_s": 0.0},
        )


class DoubleAnchorMethod(Method):
    name = "double_anchor"
    description = "test double: no adaptation"
    trains = False

    def adapt(self, backbone, data, ctx):
        total, _trainable = backbone.parameter_counts()
        return AdaptResult(trainable_params=0, total_params=total)


class DoubleRmsMetric(Metric):
    """RMS level in dB: a real formula on real samples, cheap enough for runner tests."""

    name = "double_rms"
    description = "test double: RMS level in dBFS"
    outputs = (MetricOutput("rms_db", True, (-120.0, 0.0), "dB"),)

    def score(self, items):
        out = []
        for it in items:
            a = np.asarray(it.audio, dtype=np.float64)
            if a.size < it.sample_rate // 10 or not np.isfinite(a).all():
                out.append(ItemScore(it.id, error="too short or non-finite audio"))
                continue
            rms = float(np.sqrt(np.mean(a**2)))
            out.append(ItemScore(it.id, {"rms_db": max(-120.0, 20 * np.log10(rms + 1e-12))}))
        return out


@hookimpl
def ttsadapt_register_backbones():
    return [DoubleToneBackbone]


@hookimpl
def ttsadapt_register_methods():
    return [DoubleNudgeMethod, DoubleAnchorMethod]


@hookimpl
def ttsadapt_register_metrics():
    return [DoubleRmsMetric]
