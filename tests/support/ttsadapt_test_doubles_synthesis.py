"""Test doubles for the ``[synthesis]`` axis: a tone backbone with decoding settings that change
its audio and an adapter it can reload, and a training method that counts its ``adapt`` calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ttsadapt_test_doubles import DoubleNudgeMethod, DoubleToneBackbone

from ttsadapt.markers import hookimpl


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    temperature: float | None = Field(None, gt=0)
    int8: bool = False


class DoubleDecodeBackbone(DoubleToneBackbone):
    """The tone of ``double_tone``, its amplitude scaled by the ``temperature`` setting (and
    rounded to 8 bits with ``int8``); saves and reloads its gain as an adapter."""

    name = "double_decode"
    description = "test double: a tone whose level follows the temperature setting"

    @classmethod
    def resolve_synthesis(cls, settings: dict[str, Any]) -> dict[str, Any]:
        return _Settings.model_validate(settings).model_dump(exclude_unset=True)

    def synthesize(self, requests, settings=None):
        s = _Settings.model_validate(settings or {})
        out = super().synthesize(requests)
        scale = s.temperature if s.temperature is not None else 1.0
        out = [a * scale for a in out]
        if s.int8:
            out = [(a * 127).round() / 127 for a in out]
        return [a.astype("float32") for a in out]

    def load_adapter(self, path):
        import torch

        gain = float((Path(path) / "gain.txt").read_text())
        with torch.no_grad():
            self.module.weight.fill_(gain)


class DoubleCountMethod(DoubleNudgeMethod):
    """``double_nudge`` that counts its ``adapt`` calls (``DoubleCountMethod.calls``)."""

    name = "double_count"
    description = "test double: double_nudge counting its adapt calls"
    calls = 0

    def adapt(self, backbone, data, ctx):
        type(self).calls += 1
        return super().adapt(backbone, data, ctx)


@hookimpl
def ttsadapt_register_backbones():
    return [DoubleDecodeBackbone]


@hookimpl
def ttsadapt_register_methods():
    return [DoubleCountMethod]
