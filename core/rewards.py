"""Rewards for preference training (GRPO, DPO pair mining): a weighted sum of metric terms in [0, 1].

Each term is a registered metric plugin, looked up by name and scored on :class:`EvalItem` like any
evaluation metric; one of its outputs is mapped to [0, 1] by a piecewise-linear map through anchor
points ``(x, y)`` (flat beyond the ends, as NeMo's Magpie-TTS rewards):

- ``cer`` (its ``cer`` output, capped at 1): 0 -> 1, 0.1 -> 0.5, 1 -> 0;
- ``speaker_similarity`` (its raw cosine ``cosine_raw``, against the item's speaker prompt):
  0 -> 0, 0.6 -> 0.5, 0.9 -> 1;
- ``quality``: PESQ against the item's reference recording when it has one (1 -> 0, 2 -> 0.5,
  4 -> 1), DNS-MOS ``ovrl`` otherwise (1 -> 0, 3 -> 0.5, 4 -> 1); each item's result says which.

Defaults: 0.45 cer + 0.45 speaker_similarity + 0.10 quality. Any metric can be a term by name (give
its anchors). Judges are not rewards: a term's metric params are its own (``reward_metric_params``:
the reward's CER uses Whisper ``tiny.en`` by default while the leaderboard judges with ``base``).

Gates come before the map: a rollout cut at the length cap (no stop), shorter than
``gate_min_duration_s``, with seconds per character of text outside
``[gate_min_s_per_char, gate_max_s_per_char]``, mostly non-speech (a share of 20 ms frames below
``silence_db`` above ``gate_max_silence``) or that a term's metric cannot score gets the minimum
reward of its group's other rollouts (not 0, which would inflate the others' advantages).

:meth:`RewardModel.score` scores every rollout it is given with one ``Metric.score`` call per metric
(models set up once, on first use) and returns the rewards, each mapped term, the gates and the
hacking diagnostics (silence share, speaking rate, duration ratio, truncation rate, share of CER > 1).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from .components import Metric, Params
from .errors import ConfigError
from .types import EvalItem

QUALITY = "quality"  # the term that is PESQ with a reference recording, DNS-MOS without

DEFAULT_ANCHORS: dict[str, list[list[float]]] = {
    "cer": [[0.0, 1.0], [0.1, 0.5], [1.0, 0.0]],
    "speaker_similarity": [[0.0, 0.0], [0.6, 0.5], [0.9, 1.0]],
    "pesq": [[1.0, 0.0], [2.0, 0.5], [4.0, 1.0]],
    "dnsmos": [[1.0, 0.0], [3.0, 0.5], [4.0, 1.0]],
}
DEFAULT_OUTPUTS = {"cer": "cer", "speaker_similarity": "cosine_raw", "dnsmos": "ovrl"}
FRAME_S = 0.02


class RewardParams(Params):
    """The reward's terms, anchors and gates (flat fields: a list-valued param would be swept)."""

    reward_weights: dict[str, float] = Field(
        default_factory=lambda: {"cer": 0.45, "speaker_similarity": 0.45, QUALITY: 0.10},
        description="term (a metric name, or 'quality') -> weight",
    )
    reward_outputs: dict[str, str] = Field(
        default_factory=dict,
        description="term -> metric output to map (default: cer 'cer', speaker_similarity "
        "'cosine_raw', dnsmos 'ovrl', else the metric's headline)",
    )
    reward_anchors: dict[str, list[list[float]]] = Field(
        default_factory=dict,
        description="metric -> [[x, y], ...] anchors of the piecewise-linear map to [0, 1] "
        "(defaults for cer, speaker_similarity, pesq, dnsmos)",
    )
    reward_metric_params: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"cer": {"model": "tiny.en"}},
        description="metric -> its params for the reward (judges are not rewards: the reward's "
        "ASR is Whisper tiny.en by default, the leaderboard's base)",
    )
    quality_with_reference: str = Field("pesq", description="quality metric with a reference")
    quality_without_reference: str = Field("dnsmos", description="quality metric without one")
    gate_require_stop: bool = Field(True, description="a rollout cut at the length cap is gated")
    gate_min_duration_s: float = Field(0.3, ge=0)
    gate_min_s_per_char: float = Field(0.02, ge=0, description="seconds per text character")
    gate_max_s_per_char: float = Field(0.3, gt=0)
    gate_max_silence: float = Field(0.8, gt=0, le=1, description="share of silent 20 ms frames")
    silence_db: float = Field(-40.0, description="frames below this RMS (dBFS) are silent")

    @model_validator(mode="after")
    def _check_reward(self) -> RewardParams:
        if not self.reward_weights:
            raise ValueError("reward_weights is empty: the reward needs at least one term")
        for term, weight in self.reward_weights.items():
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"reward_weights[{term!r}] must be a finite weight >= 0")
        for name, anchors in self.reward_anchors.items():
            check_anchors(anchors, f"reward_anchors[{name!r}]")
        if self.gate_min_s_per_char >= self.gate_max_s_per_char:
            raise ValueError("gate_min_s_per_char must be below gate_max_s_per_char")
        return self


def check_anchors(anchors: Sequence[Sequence[float]], where: str) -> None:
    """Raise ``ValueError`` unless ``anchors`` are >= 2 finite ``[x, y]`` with rising x and y in
    [0, 1]."""
    if len(anchors) < 2 or any(len(a) != 2 for a in anchors):
        raise ValueError(f"{where}: expected at least two [x, y] anchors, got {anchors!r}")
    xs = [float(a[0]) for a in anchors]
    ys = [float(a[1]) for a in anchors]
    if not all(math.isfinite(v) for v in xs + ys):
        raise ValueError(f"{where}: anchors must be finite numbers")
    if any(b <= a for a, b in itertools.pairwise(xs)):
        raise ValueError(f"{where}: anchor x values must rise strictly, got {xs}")
    if any(not 0.0 <= y <= 1.0 for y in ys):
        raise ValueError(f"{where}: anchor y values must lie in [0, 1], got {ys}")


def piecewise_linear(x: float, anchors: Sequence[Sequence[float]]) -> float:
    """The map through ``anchors`` at ``x``: linear between anchors, flat beyond the ends."""
    xs = [float(a[0]) for a in anchors]
    ys = [float(a[1]) for a in anchors]
    return float(np.interp(float(x), xs, ys))


def silence_share(audio: np.ndarray, sample_rate: int, silence_db: float) -> float:
    """Share of 20 ms frames whose RMS is below ``silence_db`` dBFS (1.0 for empty audio)."""
    wav = np.asarray(audio, dtype=np.float64).reshape(-1)
    hop = max(1, round(FRAME_S * sample_rate))
    n = wav.size // hop
    if n == 0:
        return 1.0
    frames = wav[: n * hop].reshape(n, hop)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    level = 20.0 * np.log10(rms + 1e-12)
    return float(np.mean(level < silence_db))


def _text_chars(text: str) -> int:
    return len("".join(text.split()))


@dataclass
class RewardResult:
    """Rewards of the rollouts given to :meth:`RewardModel.score`, in order."""

    rewards: np.ndarray  # (n,)
    terms: dict[str, np.ndarray]  # term -> mapped value in [0, 1] (NaN where gated)
    raw: dict[str, np.ndarray]  # term -> the metric output before the map (NaN where gated)
    gates: list[str | None]  # why a rollout got its group's minimum (None: scored)
    quality_metric: list[str | None]  # which metric the quality term used per rollout
    durations: np.ndarray  # seconds
    diagnostics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Mean/std of the reward and each term, gate counts, diagnostics: one curve row's worth."""
        out: dict[str, Any] = {
            "reward_mean": float(np.mean(self.rewards)) if self.rewards.size else math.nan,
            "reward_std": float(np.std(self.rewards)) if self.rewards.size else math.nan,
        }
        for term, values in self.terms.items():
            finite = values[np.isfinite(values)]
            out[f"term_{term}_mean"] = float(finite.mean()) if finite.size else math.nan
            out[f"term_{term}_std"] = float(finite.std()) if finite.size else math.nan
        for reason, count in sorted(Counter(g.split(":")[0] for g in self.gates if g).items()):
            out[f"gated_{reason}"] = count
        used = Counter(q for q in self.quality_metric if q)
        for name, count in sorted(used.items()):
            out[f"quality_{name}"] = count
        out.update(self.diagnostics)
        return out


class RewardModel:
    """Scores rollouts with the reward's metrics; each metric instance is set up once.

    :param params: the terms, anchors and gates.
    :param metric_class: metric name -> registered metric class (e.g. ``lambda n:
        registry.get("metric", n)``; see :func:`metric_lookup`).
    """

    def __init__(self, params: RewardParams, metric_class: Callable[[str], type[Metric]]) -> None:
        self.params = params
        self._metric_class = metric_class
        self._metrics: dict[str, Metric] = {}
        self.calls: Counter[str] = Counter()  # Metric.score calls per metric
        for term in params.reward_weights:  # fail early on unknown names and missing anchors
            for name in self._term_metrics(term):
                self.anchors(name)
                self.metric(name)

    def _term_metrics(self, term: str) -> list[str]:
        p = self.params
        if term == QUALITY:
            return [p.quality_with_reference, p.quality_without_reference]
        return [term]

    def anchors(self, metric: str) -> list[list[float]]:
        anchors = self.params.reward_anchors.get(metric) or DEFAULT_ANCHORS.get(metric)
        if anchors is None:
            raise ConfigError(
                f"reward term '{metric}' has no anchors: set reward_anchors['{metric}'] = "
                "[[x, y], ...] mapping its output to [0, 1]"
            )
        return anchors

    def metric(self, name: str) -> Metric:
        if name not in self._metrics:
            cls = self._metric_class(name)
            params = self.params.reward_metric_params.get(name, {})
            try:
                self._metrics[name] = cls(**params)
            except Exception as exc:  # pydantic or the metric's own check
                raise ConfigError(
                    f"reward_metric_params[{name!r}] are not valid params of metric '{name}': {exc}"
                ) from exc
        return self._metrics[name]

    def output(self, name: str) -> str:
        metric = self.metric(name)
        wanted = self.params.reward_outputs.get(name) or DEFAULT_OUTPUTS.get(name)
        known = [o.name for o in metric.outputs]
        if wanted is None:
            if not known:
                raise ConfigError(f"reward term '{name}': the metric declares no outputs")
            return known[0]
        if wanted not in known:
            raise ConfigError(
                f"reward_outputs[{name!r}] = {wanted!r} is not an output of metric '{name}'; "
                f"it has {known}"
            )
        return wanted

    def _score(self, name: str, items: list[EvalItem]) -> list[Any]:
        """One ``Metric.score`` call for all ``items``, through the shared scorer (the metric is
        set up once per process; an item the metric fails on becomes an error row). No score
        cache: rollouts are new audio every time."""
        from .scoring import Scorer

        self.calls[name] += 1
        scorer = Scorer({name: self.metric(name)}, None, batch_size=max(1, len(items)))
        try:
            return scorer.score(list(items), progress=False)[name]
        finally:
            scorer.close()

    def gate(self, item: EvalItem, stopped: bool) -> tuple[str | None, dict[str, float]]:
        """Why ``item`` is gated (None: it is not) and its duration / silence / rate numbers."""
        p = self.params
        audio = np.asarray(item.audio, dtype=np.float32).reshape(-1)
        duration = audio.size / float(item.sample_rate) if item.sample_rate else 0.0
        silence = silence_share(audio, item.sample_rate, p.silence_db)
        chars = _text_chars(item.text)
        per_char = duration / chars if chars else math.nan
        info = {
            "duration_s": duration,
            "silence_share": silence,
            "s_per_char": per_char,
            "speaking_rate": chars / duration if duration > 0 else math.nan,
        }
        if item.reference_audio is not None and item.reference_sample_rate:
            ref_s = np.asarray(item.reference_audio).reshape(-1).size / item.reference_sample_rate
            info["duration_ratio"] = duration / ref_s if ref_s > 0 else math.nan
        if p.gate_require_stop and not stopped:
            return "no_stop: cut at the length cap", info
        if not np.isfinite(audio).all():
            return "non_finite: the audio has NaN/inf samples", info
        if duration < p.gate_min_duration_s:
            return f"too_short: {duration:.2f} s < {p.gate_min_duration_s} s", info
        if chars and not p.gate_min_s_per_char <= per_char <= p.gate_max_s_per_char:
            return (
                f"duration_ratio: {per_char:.3f} s per character outside "
                f"[{p.gate_min_s_per_char}, {p.gate_max_s_per_char}]",
                info,
            )
        if silence > p.gate_max_silence:
            return f"non_speech: {silence:.0%} of frames below {p.silence_db} dBFS", info
        return None, info

    def _batches(self, term: str, items: Sequence[EvalItem], idx: list[int]) -> list[Any]:
        """(metric, item indices) that compute ``term``: quality splits by reference audio."""
        p = self.params
        if term != QUALITY:
            return [(term, idx)]
        return [
            (p.quality_with_reference, [i for i in idx if items[i].reference_audio is not None]),
            (p.quality_without_reference, [i for i in idx if items[i].reference_audio is None]),
        ]

    def score(
        self, items: Sequence[EvalItem], stopped: Sequence[bool], groups: Sequence[int]
    ) -> RewardResult:
        """Rewards of ``items`` (rollouts; ``groups[i]`` is the request ``i`` answers): each
        metric scores every ungated item in one call."""
        t0 = time.perf_counter()
        p = self.params
        n = len(items)
        if not (len(stopped) == len(groups) == n):
            raise ValueError("score: items, stopped and groups must have the same length")
        gated = [self.gate(item, bool(stop)) for item, stop in zip(items, stopped, strict=True)]
        gates: list[str | None] = [reason for reason, _ in gated]
        infos = [info for _, info in gated]
        terms: dict[str, np.ndarray] = {t: np.full(n, np.nan) for t in p.reward_weights}
        raw: dict[str, np.ndarray] = {t: np.full(n, np.nan) for t in p.reward_weights}
        quality_used: list[str | None] = [None] * n
        cer_raw = np.full(n, np.nan)
        for term in p.reward_weights:
            open_idx = [i for i in range(n) if gates[i] is None]
            for name, idx in self._batches(term, items, open_idx):
                if not idx:
                    continue
                output, anchors = self.output(name), self.anchors(name)
                scores = self._score(name, [items[i] for i in idx])
                for i, s in zip(idx, scores, strict=True):
                    value = s.values.get(output) if s.error is None else None
                    if value is None or not math.isfinite(value):
                        gates[i] = (
                            f"metric_error: {name}: {s.error or f'no finite {output!r} output'}"
                        )
                        continue
                    raw[term][i] = value
                    terms[term][i] = piecewise_linear(value, anchors)
                    if term == QUALITY:
                        quality_used[i] = name
                    cer_raw[i] = s.values.get("cer_raw", cer_raw[i])
        closed = np.array([g is not None for g in gates], dtype=bool)
        for term in p.reward_weights:  # a gated item's terms do not count in the term means
            terms[term][closed] = np.nan
            raw[term][closed] = np.nan
        rewards = _group_floor(
            np.array(
                [
                    0.0 if closed[i] else sum(w * terms[t][i] for t, w in p.reward_weights.items())
                    for i in range(n)
                ]
            ),
            closed,
            groups,
        )
        diagnostics = _diagnostics(infos, stopped, gates, cer_raw)
        return RewardResult(
            rewards=rewards,
            terms=terms,
            raw=raw,
            gates=gates,
            quality_metric=quality_used,
            durations=np.array([info["duration_s"] for info in infos]),
            diagnostics=diagnostics,
            timings={"score_s": time.perf_counter() - t0},
        )


def _group_floor(rewards: np.ndarray, closed: np.ndarray, groups: Sequence[int]) -> np.ndarray:
    """A gated rollout gets the lowest reward of its group's ungated ones (0 if none is open)."""
    group_arr = np.asarray(groups)
    for g in dict.fromkeys(group_arr.tolist()):
        idx = np.flatnonzero(group_arr == g)
        open_r = [rewards[i] for i in idx if not closed[i]]
        floor = min(open_r) if open_r else 0.0
        rewards[idx[closed[idx]]] = floor
    return rewards


def _diagnostics(
    infos: list[dict[str, float]],
    stopped: Sequence[bool],
    gates: list[str | None],
    cer_raw: np.ndarray,
) -> dict[str, float]:
    """Hacking diagnostics of a scored group (means over rollouts where measured)."""

    def mean_of(key: str) -> float:
        vals = [info[key] for info in infos if math.isfinite(info.get(key, math.nan))]
        return float(np.mean(vals)) if vals else math.nan

    n = len(infos)
    finite_cer = cer_raw[np.isfinite(cer_raw)]
    return {
        "n_rollouts": n,
        "n_gated": sum(g is not None for g in gates),
        "silence_share": mean_of("silence_share"),
        "speaking_rate": mean_of("speaking_rate"),
        "duration_ratio": mean_of("duration_ratio"),
        "duration_s": mean_of("duration_s"),
        "truncation_rate": float(np.mean([not s for s in stopped])) if n else math.nan,
        "cer_above_1": float(np.mean(finite_cer > 1.0)) if finite_cer.size else math.nan,
    }


def metric_lookup(hooks: Any = None) -> Callable[[str], type[Metric]]:
    """Metric name -> class, from a plugin manager's hook relay (a run's ``ctx.hooks``: every
    plugin of the run, test doubles included) or, without one, from the default registry."""
    if hooks is None:
        from .registry import build_registry

        registry = build_registry()
        return lambda name: registry.get("metric", name)
    table: dict[str, type[Metric]] = {}
    for classes in hooks.ttsadapt_register_metrics():
        for cls in classes or []:
            table.setdefault(cls.name, cls)

    def lookup(name: str) -> type[Metric]:
        if name not in table:
            raise ConfigError(
                f"reward term '{name}' names no registered metric; known metrics: "
                f"{', '.join(sorted(table)) or 'none'}"
            )
        return table[name]

    return lookup
