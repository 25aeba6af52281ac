"""One evaluation path: evaluation sets, synthesis, and scoring through one cached scorer.

The runner (a run's evaluation set, its synthesis and its scores), the dev-metric checkpoint
selection, data cards and data filters all go through this module, so a metric is built, set up
and called the same way wherever it scores audio:

- evaluation sets: :func:`select_eval_set` takes the suite's split and speakers (capped round-robin
  over speakers, so every voice is evaluated) and a speaker prompt per speaker from outside the
  split; :func:`speaker_subset` keeps the speakers a data recipe trains on;
- synthesis: :func:`synthesize` speaks an evaluation set and returns the items to score and one
  row per utterance (its timings and error). It writes nothing: the runner puts the audio and the
  rows in the run folder;
- scoring: :func:`metric_instance` is the process's one instance of a metric per registry and
  parameters (built on first use); :class:`~ttsadapt.scoring.Scorer` sets each instance up once per
  process, only when some item is not in its per-item cache, and isolates failing items.
  :class:`Evaluator` scores evaluation items with the SQLite score cache; :class:`ClipScorer` and
  :func:`score_clips` score data clips with one metric (no SQLite cache: values are memoised on
  the clip, see :func:`score_clips`); :func:`dev_scorer` is the dev-metric callback of training.
"""

from __future__ import annotations

import contextlib
import json
import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from .audio import load_audio, resample
from .components import Backbone, Metric
from .errors import ConfigError, ItemError, TTSAdaptError
from .scoring import Scorer
from .types import Clip, EvalItem, ItemScore, SynthesisRequest

# --------------------------------------------------------------------------- evaluation sets


@dataclass
class EvalSet:
    """The suite's fixed evaluation set, loaded once per process."""

    clips: list[Clip]
    prompts: dict[str, Clip]  # speaker -> reference clip of that speaker (not from the eval split)
    quarantine: list[Any]


def select_eval_set(clips: list[Clip], spec: Any, quarantine: list[Any], where: Any) -> EvalSet:
    """The clips of ``spec.split`` (only ``spec.speakers`` when given), at most ``spec.max_items``
    taken in turn from each speaker, and each speaker's first clip (by id) outside the split as
    its prompt. ``where`` names the suite in the error raised when nothing is left."""
    speakers = set(spec.speakers) if spec.speakers else None
    chosen = [
        c for c in clips if c.split == spec.split and (speakers is None or c.speaker in speakers)
    ]
    if not chosen:
        raise TTSAdaptError(
            f"suite {where}: the evaluation set is empty (split {spec.split!r}"
            + (f", speakers {sorted(speakers)}" if speakers else "")
            + ")"
        )
    chosen = round_robin_by_speaker(sorted(chosen, key=lambda c: c.id), spec.max_items)
    prompts: dict[str, Clip] = {}
    for c in sorted(clips, key=lambda c: c.id):
        if c.split != spec.split and c.speaker not in prompts:
            prompts[c.speaker] = c
    return EvalSet(chosen, prompts, quarantine)


def speaker_subset(full: EvalSet, speakers: Sequence[str], where: Any, recipe: Any) -> EvalSet:
    """The part of ``full`` spoken by ``speakers`` (the speakers data recipe ``recipe`` trains
    on); an error naming suite ``where`` and the recipe when none of them is in it."""
    wanted = set(speakers)
    clips = [c for c in full.clips if c.speaker in wanted]
    if not clips:
        raise TTSAdaptError(
            f"suite {where}: recipe {recipe!r} trains on speakers "
            f"{sorted(wanted)}, none of whom is in the evaluation set"
        )
    return EvalSet(clips, full.prompts, full.quarantine)


def round_robin_by_speaker(clips: list[Clip], cap: int | None) -> list[Clip]:
    """The first ``cap`` clips taken in turn from each speaker, so every voice is evaluated."""
    if cap is None or len(clips) <= cap:
        return clips
    by_spk: dict[str, list[Clip]] = {}
    for c in clips:
        by_spk.setdefault(c.speaker, []).append(c)
    longest = max(len(q) for q in by_spk.values())
    interleaved = [
        by_spk[s][i] for i in range(longest) for s in sorted(by_spk) if i < len(by_spk[s])
    ]
    return sorted(interleaved[:cap], key=lambda c: c.id)


# --------------------------------------------------------------------------- synthesis


@dataclass
class Synthesis:
    """What :func:`synthesize` returns: one item per clip, in order (a failed utterance has empty
    audio), and one row per utterance (``synthesis.jsonl``: timings and error)."""

    items: list[EvalItem]
    rows: list[dict[str, Any]]
    sample_rate: int

    def spoken(self) -> list[EvalItem]:
        """The items whose synthesis succeeded (the audio a run folder keeps)."""
        return [it for it, row in zip(self.items, self.rows) if row["error"] is None]


def synthesis_request(clip: Clip, prompts: Mapping[str, Clip]) -> SynthesisRequest:
    """The request for ``clip``: its text, with its speaker's prompt recording when readable."""
    prompt = prompts.get(clip.speaker)
    prompt_audio = prompt_sr = None
    if prompt is not None:
        try:
            prompt_audio, prompt_sr = load_audio(prompt.audio)
        except ItemError:
            prompt_audio = None
    return SynthesisRequest(
        id=clip.id,
        text=clip.text,
        language=clip.language,
        speaker=clip.speaker,
        prompt_audio=prompt_audio,
        prompt_sample_rate=prompt_sr,
        prompt_text=prompt.text if prompt is not None else None,
    )


def eval_item(clip: Clip, prompts: Mapping[str, Clip], audio: Any, sr: int) -> EvalItem:
    """The item metrics score: ``audio`` (empty when ``None``) with the clip's text, its own
    recording as reference (``reference_audio``, else the clip's audio: never the speaker prompt,
    another utterance) and its speaker's prompt."""
    item = EvalItem(
        id=clip.id,
        audio=audio if audio is not None else np.zeros(0, dtype=np.float32),
        sample_rate=sr,
        text=clip.text,
        language=clip.language,
        speaker=clip.speaker,
    )
    reference = clip.reference_audio or clip.audio  # the recording of this utterance
    with contextlib.suppress(ItemError):
        item.reference_audio, item.reference_sample_rate = load_audio(reference)
    prompt = prompts.get(clip.speaker)
    if prompt is not None:
        with contextlib.suppress(ItemError):
            item.speaker_prompt, item.speaker_prompt_sample_rate = load_audio(prompt.audio)
    return item


def synthesize(
    backbone: Backbone,
    eval_set: EvalSet,
    device: str,
    batch_size: int,
    settings: Mapping[str, Any] | None = None,
    logger: logging.Logger | None = None,
    progress: bool = False,
) -> Synthesis:
    """Speak every clip of ``eval_set`` with synthesis ``settings`` (``None`` or empty: the
    backbone's defaults), ``batch_size`` requests per call; a failing batch is retried item by
    item and a failing item gets empty audio and its error. Each call is timed (see
    :mod:`ttsadapt.latency`): every row carries its utterance's ``synth_s``, ``rtf``,
    ``first_audio_s``, ``peak_rss_mb`` and ``peak_gpu_mb``."""
    from tqdm.auto import tqdm

    def speak(reqs: list[SynthesisRequest]) -> list[Any]:
        if settings:
            return list(backbone.synthesize(reqs, dict(settings)))
        return list(backbone.synthesize(reqs))

    sr = backbone.sample_rate
    out = Synthesis([], [], sr)
    clips = eval_set.clips
    bar = tqdm(total=len(clips), desc="synthesis", unit="utt", leave=False, disable=not progress)
    for start in range(0, len(clips), batch_size):
        batch = clips[start : start + batch_size]
        requests = [synthesis_request(c, eval_set.prompts) for c in batch]
        spoken = _speak_batch(speak, requests, device, logger)
        for clip, (audio, seconds, cost, err) in zip(batch, spoken):
            if err is None:
                audio = np.asarray(audio, dtype=np.float32).reshape(-1)
                if audio.size == 0 or not np.isfinite(audio).all():
                    err = "synthesis failed: empty or non-finite audio"
            item = eval_item(clip, eval_set.prompts, audio if err is None else None, sr)
            if err is not None and logger:
                logger.warning("item %s: %s", clip.id, err)
            out.items.append(item)
            out.rows.append(_synthesis_row(clip, item, sr, seconds, cost, err))
        bar.update(len(batch))
    bar.close()
    return out


def _speak_batch(
    speak: Callable[[list[SynthesisRequest]], list[Any]],
    requests: list[SynthesisRequest],
    device: str,
    logger: logging.Logger | None,
) -> list[tuple[Any, float, Any, str | None]]:
    """``(audio, seconds, cost, error)`` per request: one timed call for the batch (its time
    shared evenly), or, when it raises, one timed call per request so the bad one is isolated."""
    from .latency import measure

    try:
        with measure(device) as cost:
            audios = speak(requests)
        seconds = cost.wall_s / max(len(requests), 1)
        return [(audio, seconds, cost, None) for audio in audios]
    except Exception as exc:  # noqa: BLE001 - retry one by one to isolate the bad item
        if logger:
            logger.warning("batch synthesis failed (%s); retrying item by item", exc)
    out: list[tuple[Any, float, Any, str | None]] = []
    for req in requests:
        try:
            with measure(device) as cost:
                audio = speak([req])[0]
            out.append((audio, cost.wall_s, cost, None))
        except Exception as item_exc:  # noqa: BLE001
            err = f"synthesis failed: {type(item_exc).__name__}: {item_exc}"
            out.append((None, cost.wall_s, cost, err))
    return out


def _synthesis_row(
    clip: Clip, item: EvalItem, sr: int, seconds: float, cost: Any, err: str | None
) -> dict[str, Any]:
    duration = (item.audio.size / sr) if err is None else 0.0
    return {
        "item": clip.id,
        "speaker": clip.speaker,
        "language": clip.language,
        "duration_s": duration,
        "synth_s": seconds,
        "rtf": (seconds / duration) if duration > 0 else None,
        "first_audio_s": cost.wall_s if err is None else None,
        "peak_rss_mb": cost.peak_rss_mb,
        "peak_gpu_mb": cost.peak_gpu_mb,
        "error": err,
    }


# --------------------------------------------------------------------------- metric instances

_POOLS: dict[int, dict[tuple[str, str], Metric]] = {}  # id(registry) -> instances
_REGISTRIES: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def metric_instance(registry: Any, name: str, params: Mapping[str, Any] | None = None) -> Metric:
    """The process's one instance of metric ``name`` with ``params`` from ``registry``, built on
    first use and kept while the registry lives (set up by the scorer when it first scores)."""
    rid = id(registry)
    if _REGISTRIES.get(rid) is not registry:  # a new registry (maybe at a dead one's address)
        _POOLS[rid] = {}
        _REGISTRIES[rid] = registry
        weakref.finalize(registry, _POOLS.pop, rid, None)
    pool = _POOLS[rid]
    key = (name, json.dumps(dict(params or {}), sort_keys=True, default=str))
    if key not in pool:
        pool[key] = registry.get("metric", name)(**dict(params or {}))
    return pool[key]


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


# --------------------------------------------------------------------------- scoring items


class Evaluator:
    """Scores evaluation items with a registry's metrics through the shared scorer.

    :param registry: where metric classes come from (instances: :func:`metric_instance`).
    :param cache_dir: folder of the per-item score cache (``scores.sqlite``); ``None``: no cache.
    :param batch_size: items handed to ``Metric.score`` per call.
    """

    def __init__(self, registry: Any, cache_dir: Path | None, batch_size: int = 16) -> None:
        self.registry = registry
        self.cache_dir = cache_dir
        self.batch_size = batch_size

    def metric(self, name: str, params: Mapping[str, Any] | None = None) -> Metric:
        return metric_instance(self.registry, name, params)

    def score(
        self, items: Sequence[EvalItem], metrics: Mapping[str, Metric], progress: bool = True
    ) -> dict[str, list[ItemScore]]:
        """``{metric name: [ItemScore per item, in order]}``; a bad item gets an error row."""
        if not items:
            return {name: [] for name in metrics}
        scorer = Scorer(dict(metrics), self.cache_dir, self.batch_size)
        try:
            return scorer.score(list(items), progress=progress)
        finally:
            scorer.close()


def dev_scorer(
    evaluator: Evaluator,
    name: str,
    metric: Metric,
    eval_set: EvalSet,
    device: str,
    batch_size: int,
) -> Callable[[Backbone], float]:
    """The dev-metric callback of training: synthesise ``eval_set`` (the backbone's default
    settings, no files) and return the mean of ``metric``'s headline over the items it scores,
    negated when lower is better (so higher is always better; NaN when nothing was scored)."""
    headline = metric.headline()
    sign = 1.0 if headline.higher_is_better else -1.0

    def dev_score(backbone: Backbone) -> float:
        items = synthesize(backbone, eval_set, device, batch_size).items
        scores = evaluator.score(items, {name: metric}, progress=False)[name]
        vals = [s.values[headline.name] for s in scores if s.ok and headline.name in s.values]
        return sign * float(np.mean(vals)) if vals else float("nan")

    return dev_score


# --------------------------------------------------------------------------- scoring clips


class ClipScorer:
    """Streams data clips into one metric through the shared scorer, one batch in memory at a
    time: ``values`` (clip id -> the metric's ``output``, default its headline) and ``errors``
    (clip id -> why it has no value). Audio is resampled to the metric's ``sample_rate``."""

    def __init__(
        self,
        registry: Any,
        name: str,
        params: Mapping[str, Any] | None = None,
        output: str | None = None,
        batch_size: int = 32,
    ) -> None:
        self.name = name
        self.metric = metric_instance(registry, name, params)
        cls = type(self.metric)
        self.output = output or (cls.outputs[0].name if cls.outputs else None)
        self.sample_rate = cls.sample_rate
        self.batch_size = batch_size
        self.values: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self._batch: list[EvalItem] = []

    def add(self, clip: Clip, audio: np.ndarray, sr: int) -> None:
        if self.sample_rate and sr != self.sample_rate:
            audio, sr = resample(audio, sr, self.sample_rate), self.sample_rate
        self._batch.append(
            EvalItem(
                id=clip.id,
                audio=audio,
                sample_rate=sr,
                text=clip.text,
                language=clip.language,
                speaker=clip.speaker,
            )
        )
        if len(self._batch) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self._batch:
            return
        scorer = Scorer({self.name: self.metric}, None, self.batch_size)
        scores = scorer.score(self._batch, progress=False)[self.name]
        for s in scores:
            if s.error is None and self.output in s.values:
                self.values[s.id] = float(s.values[self.output])
            else:
                self.errors[s.id] = s.error or f"{self.name} gave no '{self.output}' value"
        self._batch.clear()


def _params_tag(params: Mapping[str, Any] | None) -> str:
    if not params:
        return ""
    return "[" + ",".join(f"{k}={params[k]}" for k in sorted(params)) + "]"


def _memoised(clip: Clip, key: str, metric: str, headline: bool) -> float | None:
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
    """One ``(value, error)`` per clip: metric ``metric_name``'s ``output`` (default: headline).

    Values are memoised on the clip (``clip.extra["scores"]["<metric>/<output>"]``) so a filter
    chain or a card never scores a clip twice; a manifest line may also carry precomputed values
    under the same key, or a plain number under the metric's name (``"dnsmos": 3.1``) which counts
    as its headline output. ``params`` are the metric's parameters, validated against its
    ``Params`` (a :class:`ConfigError` names the bad field); values scored with non-default
    parameters are memoised under their own key (``"cer[model=tiny.en]/cer"``) so they never mix
    with the default metric's. A clip that cannot be loaded or scored gets ``(None, reason)``;
    the others go on.
    """
    metric_cls = registry.get("metric", metric_name)
    params = resolve_metric_params(registry, metric_name, params)
    headline = metric_cls.outputs[0].name if metric_cls.outputs else None
    output = output or headline
    key = f"{metric_name}{_params_tag(params)}/{output}"
    results: list[tuple[float | None, str | None]] = [(None, None)] * len(clips)
    todo: list[int] = []
    for i, clip in enumerate(clips):
        value = _memoised(clip, key, metric_name, output == headline and not params)
        if value is None:
            todo.append(i)
        else:
            results[i] = (value, None)
    if not todo:
        return results
    scorer = ClipScorer(registry, metric_name, params, output, batch_size)
    for i in todo:
        try:
            audio, rate = load_audio(clips[i].audio)
        except ItemError as exc:
            results[i] = (None, str(exc))
            continue
        scorer.add(clips[i], audio, rate)
    scorer.flush()
    for i in todo:
        clip = clips[i]
        if clip.id in scorer.values:
            value = scorer.values[clip.id]
            clip.extra.setdefault("scores", {})[key] = value
            results[i] = (value, None)
        elif clip.id in scorer.errors:
            results[i] = (None, scorer.errors[clip.id])
    return results
