"""Contract checks for component authors (the model is pytest's ``pytester``).

Third-party plugins run these on their own classes, against the real host::

    from ttsadapt.testing import check_metric
    def test_my_metric_contract():
        check_metric(MyMetric)

Each ``check_*`` raises ``AssertionError`` with a message that says what the contract expects.
The checks use small synthetic signals (a harmonic tone with a speech-like envelope) so they run in
seconds; they test the *shape* of a component's behaviour, not its numbers.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from .components import BASES, Backbone, Component, DataFilter, Method, Metric
from .types import Clip, EvalItem, ItemScore, SynthesisRequest

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def speechlike_signal(
    seconds: float = 1.5, sample_rate: int = 16000, f0: float = 140.0, seed: int = 0
) -> np.ndarray:
    """A deterministic voiced-speech stand-in: harmonics of ``f0`` under a 4 Hz syllable envelope,
    plus a little noise, peak 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    harmonics = sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in range(1, 12))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 4 * t)) * (t > 0.05) * (t < seconds - 0.05)
    x = harmonics * envelope + 0.003 * rng.standard_normal(t.size)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def check_metadata(cls: type[Component]) -> None:
    assert isinstance(cls, type) and issubclass(cls, Component), f"{cls!r} is not a Component class"
    assert cls.kind in BASES and issubclass(cls, BASES[cls.kind]), (
        f"{cls.__name__}.kind {cls.kind!r} does not match its base class"
    )
    assert isinstance(cls.name, str) and NAME_RE.match(cls.name), (
        f"{cls.__name__}.name must be lower_snake_case, got {cls.name!r}"
    )
    assert isinstance(cls.version, str) and cls.version, (
        f"{cls.name}: version must be a non-empty str"
    )
    try:
        params = cls.resolve_params({})
    except Exception as exc:
        raise AssertionError(
            f"{cls.name}: Params() must be constructible from defaults: {exc}"
        ) from exc
    import json

    json.dumps(params)  # resolved params must be JSON-able (they form the run id)
    meta = cls.metadata()
    assert meta["name"] == cls.name and meta["kind"] == cls.kind
    try:
        cls.resolve_params({"__no_such_param__": 1})
    except Exception:  # noqa: BLE001
        pass
    else:
        raise AssertionError(f"{cls.name}: unknown params must be rejected (Params extra='forbid')")


def check_metric(
    cls: type[Metric], params: dict[str, Any] | None = None, sample_rate: int = 16000
) -> list[ItemScore]:
    """Metadata, then score a good item and a batch of bad ones: one ItemScore per item, in order,
    values finite and inside each output's declared range, bad items as error rows (no raise)."""
    check_metadata(cls)
    assert cls.outputs, (
        f"{cls.name}: `outputs` must list at least one MetricOutput (headline first)"
    )
    names = [o.name for o in cls.outputs]
    assert len(set(names)) == len(names), f"{cls.name}: duplicate output names {names}"
    for o in cls.outputs:
        assert o.range[0] < o.range[1], f"{cls.name}.{o.name}: range must be (low, high)"
    metric = cls(**(params or {}))
    metric.setup()
    good = speechlike_signal(sample_rate=sample_rate)
    item = EvalItem(
        id="good",
        audio=good,
        sample_rate=sample_rate,
        text="hello world",
        language="en",
        speaker="s1",
        reference_audio=good.copy(),
        reference_sample_rate=sample_rate,
        speaker_prompt=speechlike_signal(sample_rate=sample_rate, f0=150.0, seed=1),
        speaker_prompt_sample_rate=sample_rate,
    )
    bad = [
        EvalItem(id="empty", audio=np.zeros(0, np.float32), sample_rate=sample_rate),
        EvalItem(id="nan", audio=np.full(sample_rate, np.nan, np.float32), sample_rate=sample_rate),
        EvalItem(id="short", audio=good[: sample_rate // 50], sample_rate=sample_rate),
    ]
    scores = _score_naming_the_crash(cls.name, metric, [item, *bad])
    assert isinstance(scores, list) and len(scores) == 4, (
        f"{cls.name}.score must return one ItemScore per item (got {len(scores)} for 4)"
    )
    assert [s.id for s in scores] == ["good", "empty", "nan", "short"], (
        f"{cls.name}.score must keep item order and ids"
    )
    for s in scores[1:]:
        assert s.error, f"{cls.name}: bad item {s.id!r} must get an error row with a reason"
    s = scores[0]
    if s.ok:
        for o in cls.outputs:
            if o.name in s.values:
                v = s.values[o.name]
                assert math.isfinite(v), f"{cls.name}.{o.name}: non-finite value {v}"
                assert o.range[0] - 1e-6 <= v <= o.range[1] + 1e-6, (
                    f"{cls.name}.{o.name}={v} outside its declared range {o.range}"
                )
    return scores


CLIP_DESCRIPTIONS = {
    "good": "a 1.5 s speech-like signal with text, reference audio and speaker prompt",
    "empty": "an empty clip (0 samples)",
    "nan": "a 1 s clip of NaN samples",
    "short": "a 20 ms clip",
}


def _score_naming_the_crash(name: str, metric: Metric, items: list[EvalItem]) -> list[ItemScore]:
    """``metric.score(items)``; when it raises, score each item alone to name the clip that makes
    it raise, and fail with that clip, what it is and the exception."""
    try:
        return metric.score(items)
    except Exception as batch_exc:  # turned into a contract failure below
        culprits = []
        for it in items:
            try:
                metric.score([it])
            except Exception as exc:  # noqa: BLE001
                culprits.append((it, exc))
        if not culprits:
            raise AssertionError(
                f"{name}.score raised {type(batch_exc).__name__}: {batch_exc} on the batch of "
                f"{len(items)} clips ({', '.join(repr(i.id) for i in items)}) but on none of them "
                "alone; a metric must score a batch as it scores its items one by one"
            ) from batch_exc
        it, item_exc = culprits[0]
        others = [repr(c.id) for c, _ in culprits[1:]]
        raise AssertionError(
            f"{name}.score raised {type(item_exc).__name__}: {item_exc} on clip {it.id!r} "
            f"({CLIP_DESCRIPTIONS.get(it.id, f'{it.audio.size} samples')} at {it.sample_rate} Hz)"
            + (f" (also on {', '.join(others)})" if others else "")
            + ". A metric must turn a clip it cannot score into ItemScore(id, error=reason), "
            "never raise: the rest of the batch still has to be scored"
        ) from item_exc


def check_filter(
    cls: type[DataFilter],
    clips: list[Clip],
    params: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
) -> None:
    """Every input clip comes back either kept or dropped with a non-empty reason, never both."""
    check_metadata(cls)
    assert cls.level in ("clip", "speaker"), f"{cls.name}.level must be 'clip' or 'speaker'"
    result = cls(**(params or {})).apply(list(clips), context or {})
    kept = {c.id for c in result.kept}
    dropped = {c.id for c, _ in result.dropped}
    assert not kept & dropped, (
        f"{cls.name}: clips both kept and dropped: {sorted(kept & dropped)[:3]}"
    )
    assert kept | dropped == {c.id for c in clips}, f"{cls.name}: clips lost silently"
    assert all(isinstance(r, str) and r for _, r in result.dropped), (
        f"{cls.name}: every dropped clip needs a reason"
    )


def check_backbone(
    cls: type[Backbone], params: dict[str, Any] | None = None, device: str = "cpu"
) -> Backbone:
    """Load, name target modules per scope, count parameters, and speak two requests."""
    check_metadata(cls)
    assert isinstance(cls.sample_rate, int) and cls.sample_rate > 0
    backbone = cls(**(params or {}))
    backbone.load(device)
    assert backbone.module is not None, f"{cls.name}.load must set `module`"
    for scope in cls.scopes:
        names = backbone.target_modules(scope)
        assert names, f"{cls.name}.target_modules({scope!r}) matched no layer"
    total, trainable = backbone.parameter_counts()
    assert total > 0 and 0 <= trainable <= total
    reqs = [
        SynthesisRequest(id="a", text="hello", language="en", speaker="s1"),
        SynthesisRequest(id="b", text="good morning", language="en", speaker="s1"),
    ]
    audios = backbone.synthesize(reqs)
    assert len(audios) == 2, f"{cls.name}.synthesize must return one array per request"
    for a in audios:
        a = np.asarray(a)
        assert a.ndim == 1 and a.dtype == np.float32 and a.size > 0, (
            f"{cls.name}.synthesize must return non-empty mono float32 arrays"
        )
        assert np.isfinite(a).all()
    return backbone


def check_method(cls: type[Method], params: dict[str, Any] | None = None) -> None:
    check_metadata(cls)
    assert isinstance(cls.trains, bool)
    assert callable(getattr(cls, "adapt", None))
    cls(**(params or {}))


CHECKS = {"metric": check_metric, "backbone": check_backbone, "method": check_method}
