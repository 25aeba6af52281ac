"""Score clips with a registered metric (DNS-MOS, WADA-SNR, CER…) for filters and data cards.

Values are cached on the clip (``clip.extra["scores"]["<metric>/<output>"]``) so a filter chain
or a card never scores a clip twice; a manifest line may also carry precomputed values under the
same key, or a plain number under the metric's name (``"dnsmos": 3.1``) which counts as its
headline output. Metric instances are set up once per registry and parameter set and reused.

A metric may be given parameters (``params``, e.g. ``{"model": "tiny.en"}`` for ``cer``): they are
validated against the metric's ``Params`` (a :class:`~ttsadapt.errors.ConfigError` names the bad
field), and values scored with non-default parameters are cached under their own key
(``"cer[model=tiny.en]/cer"``) so they never mix with the default metric's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from ..audio import load_audio
from ..errors import ConfigError, ItemError
from ..types import Clip, EvalItem

_INSTANCES: dict[tuple[int, str, str], Any] = {}


def resolve_metric_params(
    registry: Any, name: str, params: Mapping[str, Any] | None, where: str = "metric_params"
) -> dict[str, Any]:
    """``params`` validated against metric ``name``'s ``Params`` (only the keys given).

    Raises :class:`ConfigError` naming ``where`` and the offending field.
    """
    if not params:
        return {}
    cls = registry.get("metric", name)
    try:
        cls.Params(**dict(params))
    except ValidationError as exc:
        problems = "; ".join(
            f"{where}.{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid parameters for metric '{name}': {problems}") from exc
    return dict(params)


def _params_tag(params: Mapping[str, Any] | None) -> str:
    if not params:
        return ""
    return "[" + ",".join(f"{k}={params[k]}" for k in sorted(params)) + "]"


def get_metric(registry: Any, name: str, params: Mapping[str, Any] | None = None) -> Any:
    """A set-up instance of metric ``name`` with ``params`` (created once per registry/params)."""
    key = (id(registry), name, json.dumps(dict(params or {}), sort_keys=True, default=str))
    if key not in _INSTANCES:
        cls = registry.get("metric", name)
        metric = cls(**dict(params or {}))
        metric.setup()
        _INSTANCES[key] = metric
    return _INSTANCES[key]


def has_metric(registry: Any, name: str) -> bool:
    return registry is not None and name in registry.names("metric")


def _cached(clip: Clip, key: str, metric: str, headline: bool) -> float | None:
    scores = clip.extra.get("scores")
    if isinstance(scores, dict) and isinstance(scores.get(key), (int, float)):
        return float(scores[key])
    if headline and isinstance(clip.extra.get(metric), (int, float)):
        return float(clip.extra[metric])
    return None


def score_clips(
    clips: Sequence[Clip],
    metric_name: str,
    registry: Any,
    output: str | None = None,
    batch_size: int = 16,
    params: Mapping[str, Any] | None = None,
) -> list[tuple[float | None, str | None]]:
    """One ``(value, error)`` per clip: the metric's ``output`` (default: its headline).

    ``params`` are the metric's parameters (validated; default: the metric's defaults). A clip
    that cannot be loaded or scored gets ``(None, reason)``; the others go on.
    """
    metric_cls = registry.get("metric", metric_name)
    params = resolve_metric_params(registry, metric_name, params)
    headline = metric_cls.outputs[0].name if metric_cls.outputs else None
    output = output or headline
    key = f"{metric_name}{_params_tag(params)}/{output}"
    results: list[tuple[float | None, str | None]] = [(None, None)] * len(clips)
    todo: list[int] = []
    for i, clip in enumerate(clips):
        value = _cached(clip, key, metric_name, output == headline and not params)
        if value is None:
            todo.append(i)
        else:
            results[i] = (value, None)
    if not todo:
        return results
    metric = get_metric(registry, metric_name, params)
    sr = metric_cls.sample_rate
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        items: list[EvalItem] = []
        index: list[int] = []
        for i in chunk:
            clip = clips[i]
            try:
                audio, rate = load_audio(clip.audio, sr)
            except ItemError as exc:
                results[i] = (None, str(exc))
                continue
            items.append(
                EvalItem(
                    id=clip.id,
                    audio=audio,
                    sample_rate=rate,
                    text=clip.text,
                    language=clip.language,
                    speaker=clip.speaker,
                )
            )
            index.append(i)
        if not items:
            continue
        try:
            scores = metric.score(items)
        except Exception as exc:  # noqa: BLE001 - a failing batch is an error row per clip
            for i in index:
                results[i] = (None, f"{metric_name} failed: {type(exc).__name__}: {exc}")
            continue
        for i, s in zip(index, scores):
            if s.error is not None or output not in s.values:
                results[i] = (None, s.error or f"{metric_name} gave no '{output}' value")
                continue
            value = float(s.values[output])
            clips[i].extra.setdefault("scores", {})[key] = value
            results[i] = (value, None)
    return results
