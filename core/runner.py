"""The runner: each planned run goes through its stages, each a method of :class:`SuiteRunner`:

1. prepare data (:meth:`SuiteRunner._prepare_data`; the training data by :meth:`training_data`):
   the suite's clips, its evaluation set (:mod:`ttsadapt.evaluation`), the clips set aside;
2. adapt (:meth:`SuiteRunner._adapt_stage`): the method adapts the loaded backbone, once per
   training identity when runs share it;
3. synthesise (:meth:`SuiteRunner._synthesise`): speak the evaluation set
   (:func:`ttsadapt.evaluation.synthesize`) and keep the audio and timings in the run folder;
4. score (:meth:`SuiteRunner._score`): every metric through the shared, cached scorer;
5. record (:meth:`SuiteRunner._record`): per-item score rows and one record per metric
   (:func:`build_record`), plus the latency record.

``run.json``'s ``timings`` gives each stage's seconds: ``load_s`` (loading the backbone),
``adapt_s``, ``synth_s``, ``score_s`` (scoring and recording) and ``total_s``.

Everything a run produces lands in its own folder of the record store (see :mod:`ttsadapt.records`).
Every clip a run trains, validates or evaluates on passes the full audio check first
(:data:`ttsadapt.data.manifest.RUN_CHECKS`: decoded, no NaN/inf, not clipped or silent, at least
0.3 s; measurements cached per file under the cache root). Each clip set aside — by that check, by
the data recipe's filters, or by the backbone while preparing training examples (a backbone lists
those in ``prepare_errors`` as ``(clip id, reason)``) — is counted by reason in ``run.json``
(``data``) and named in the run's ``dropped_clips.jsonl`` (stage, manifest, line, id, path, code,
reason).
A run that raises is recorded as failed with its error and traceback; the suite goes on. Re-running
a suite skips finished runs, retries failed and half-written ones and scores metrics a finished run
lacks (``--overwrite only-missing``, the default); ``never`` touches no finished run; ``always``
redoes every run from scratch.

A run planned ``after`` another run of the suite (see :mod:`ttsadapt.suite`) gets that run's folder
as its method's ``init_run``; when that run has not finished ok, the run fails at once (before
loading anything) with an error naming it. Its records say where it started (``after``).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .audio import load_audio, write_audio
from .components import AdaptResult, Backbone, Method, Metric, RunContext, TrainingData
from .errors import TTSAdaptError
from .evaluation import (
    EvalSet,
    Evaluator,
    Synthesis,
    dev_scorer,
    eval_item,
    select_eval_set,
    speaker_subset,
    synthesize,
)
from .executors import Executor, LocalExecutor
from .provenance import provenance, resolve_device
from .records import atomic_write_json, atomic_write_jsonl
from .registry import Registry
from .results import (
    NOT_APPLICABLE_PREFIX,
    CheckpointIndex,
    CurveRow,
    MetricRecord,
    RunSummary,
    ScoreRow,
    SynthesisRow,
    read_rows,
    write_rows,
    write_score_rows,
)
from .store import RunLockedError, RunStore
from .suite import Run, Suite
from .threads import torch_threads
from .types import Clip, EvalItem, ItemScore

OVERWRITE_MODES = ("never", "only-missing", "always")
NOT_APPLICABLE = NOT_APPLICABLE_PREFIX  # an error that begins so: not a failure
DROPPED_CLIPS_FILE = "dropped_clips.jsonl"
BACKBONE_REJECTED = "backbone_rejected"


@dataclass
class RunOutcome:
    run_id: str
    label: str
    status: str  # ok | failed | skipped | locked | rescored
    error: str | None = None
    seconds: float = 0.0


@dataclass
class SuiteSummary:
    suite: str
    results: Path
    outcomes: list[RunOutcome] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(Counter(o.status for o in self.outcomes))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass


class SuiteRunner:
    """Runs a validated :class:`Suite` into a results folder."""

    def __init__(
        self,
        suite: Suite,
        registry: Registry,
        results: Path | str = "results",
        overwrite: str = "only-missing",
        device: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        """``cache_dir``: the metric score cache (default: ``ttsadapt.paths.score_cache_dir()``)."""
        if overwrite not in OVERWRITE_MODES:
            raise TTSAdaptError(f"--overwrite must be one of {', '.join(OVERWRITE_MODES)}")
        self.suite = suite
        self.registry = registry
        self.store = RunStore(results, suite.name)
        self.overwrite = overwrite
        self.device = resolve_device(device or suite.spec.device)
        from .paths import score_cache_dir

        self.cache_dir = cache_dir if cache_dir is not None else score_cache_dir()
        self._clips: list[Clip] | None = None
        self._quarantine: list[Any] = []
        self._manifest: Path | None = None
        self._audio_check: dict[str, Any] | None = None
        self._eval: EvalSet | None = None
        self._eval_by_speakers: dict[tuple[str, ...], EvalSet] = {}
        # the one scorer of every stage that scores (the run's metrics, the dev metric)
        self.evaluator = Evaluator(registry, self.cache_dir)

    # ------------------------------------------------------------------ planning

    def plan(self) -> list[tuple[Run, str]]:
        """Each run with what will happen to it: run, skip or rescore (missing metrics)."""
        statuses = self.store.scan()
        plan = []
        for run in self.suite.runs:
            status = statuses.get(run.run_id, "missing")
            if self.overwrite == "always" or status in ("missing", "partial", "failed"):
                plan.append((run, "run"))
            elif self.overwrite == "only-missing" and self._missing_metrics(run):
                plan.append((run, "rescore"))
            else:
                plan.append((run, "skip"))
        return plan

    def _missing_metrics(self, run: Run) -> list[dict[str, Any]]:
        have = self.store.recorded_metrics(run.run_id)
        return [m for m in run.metrics if have.get(m["name"]) != m["version"]]

    # ------------------------------------------------------------------ executing

    def run(self, executor: Executor | None = None) -> SuiteSummary:
        self.store.ensure_writable()
        from .records import atomic_write_text

        atomic_write_text(self.store.suite_dir / "suite.toml", self.suite.raw)
        plan = self.plan()
        actions = {run.run_id: action for run, action in plan}
        summary = SuiteSummary(self.suite.name, self.store.results)
        for run, action in plan:
            if action == "skip":
                summary.outcomes.append(RunOutcome(run.run_id, run.label(), "skipped"))
        todo = [run for run, action in plan if action != "skip"]
        if self.overwrite == "always":
            for run in todo:
                self.store.remove(run.run_id)
                if run.synthesis:  # its shared training is redone too (by the first of its runs)
                    self.store.remove_trained(run.train_id)
        executor = executor or LocalExecutor()

        def one(run: Run) -> RunOutcome:
            return self.execute(run, rescore=actions[run.run_id] == "rescore")

        for outcome in executor.map(one, todo):
            summary.outcomes.append(outcome)
        return summary

    def execute(self, run: Run, rescore: bool = False) -> RunOutcome:
        """Execute one run (or score its missing metrics); never raises for a component failure."""
        t0 = time.perf_counter()
        try:
            with self.store.claim(run.run_id) as run_dir:
                # another process may have finished it while we waited in the queue
                finished = (
                    not rescore
                    and self.overwrite != "always"
                    and self.store.status(run.run_id) == "ok"
                    and not self._missing_metrics(run)
                )
                if finished:
                    return RunOutcome(run.run_id, run.label(), "skipped")
                if rescore:
                    status, error = self._rescore(run, run_dir)
                    return RunOutcome(
                        run.run_id,
                        run.label(),
                        "rescored" if status == "ok" else status,
                        error,
                        time.perf_counter() - t0,
                    )
                status, error = self._execute(run)
        except RunLockedError as exc:
            return RunOutcome(run.run_id, run.label(), "locked", str(exc))
        return RunOutcome(run.run_id, run.label(), status, error, time.perf_counter() - t0)

    # ------------------------------------------------------------------ 1. prepare data

    def clips(self) -> list[Clip]:
        """The suite's clips that pass the full audio check (the rest are in ``_quarantine``)."""
        if self._clips is None:
            from .data.manifest import RUN_CHECKS, AudioCheckCache, load_manifest

            corpus = self.suite.spec.corpus
            if corpus.manifest:
                manifest = (self.suite.root / corpus.manifest).resolve()
            else:
                from .data.corpus import build_corpus

                manifest = build_corpus(corpus.model_dump(exclude_none=True), self.cache_dir)
            cache = AudioCheckCache()
            try:
                loaded = load_manifest(manifest, **RUN_CHECKS, cache=cache)
            finally:
                cache.close()
            self._clips = loaded.clips
            self._quarantine = loaded.quarantine
            self._manifest = manifest
            self._audio_check = loaded.audio_check
            if not self._clips:
                raise TTSAdaptError(
                    f"{manifest}: no usable clips ({len(loaded.quarantine)} quarantined)"
                )
        return self._clips

    def eval_set(self) -> EvalSet:
        """The suite's evaluation set (:func:`ttsadapt.evaluation.select_eval_set`), built once."""
        if self._eval is None:
            clips = self.clips()
            spec = self.suite.spec.evaluation
            self._eval = select_eval_set(clips, spec, self._quarantine, self.suite.path)
        return self._eval

    def eval_set_for(self, run: Run) -> EvalSet:
        """The run's evaluation set: the suite's, or with ``evaluation.match_recipe_speakers`` the
        part of it spoken by the speakers the run's recipe trains on."""
        full = self.eval_set()
        speakers = (run.recipe or {}).get("speakers")
        if not (self.suite.spec.evaluation.match_recipe_speakers and speakers):
            return full
        key = tuple(sorted(speakers))
        if key not in self._eval_by_speakers:
            subset = speaker_subset(full, key, self.suite.path, run.data_recipe)
            self._eval_by_speakers[key] = subset
        return self._eval_by_speakers[key]

    def _prepare_data(
        self, run: Run, run_dir: Path, summary: dict[str, Any]
    ) -> tuple[EvalSet, list[dict[str, Any]]]:
        """Stage 1: the run's evaluation set, its counts in ``run.json``'s ``data`` and the rows of
        the clips the manifest check set aside (the training data is prepared in the adapt stage,
        by :meth:`training_data`, when the method trains)."""
        eval_set = self.eval_set_for(run)
        summary["data"] = {
            "eval_items": len(eval_set.clips),
            "audio_check": self._audio_check,
            "quarantined": len(eval_set.quarantine),
            "quarantine_reasons": dict(Counter(q.code for q in eval_set.quarantine)),
        }
        drops = self._manifest_drops()
        self._write_drops(run_dir, summary, drops)
        return eval_set, drops

    def training_data(
        self, run: Run, backbone: Backbone, logger: logging.Logger
    ) -> tuple[TrainingData, dict[str, Any], list[dict[str, Any]]]:
        """The run's training and validation clips, the recipe report, and a row for each clip
        set aside (the recipe's filters; clips the recipe brought in from another manifest that
        fail the audio check)."""
        from .data.recipes import Recipe, prepare_training_data

        eval_split = self.suite.spec.evaluation.split
        pool = [c for c in self.clips() if c.split != eval_split]
        recipe = Recipe.model_validate(run.recipe)
        context: dict[str, Any] = {"registry": self.registry}
        token_count = getattr(backbone, "token_count", None)
        if callable(token_count):
            context["token_count"] = token_count
        prepared = prepare_training_data(pool, recipe, run.seed, self.registry, context)
        rows: list[dict[str, Any]] = []
        for clip, reason in prepared.dropped:
            logger.info("dropped %s: %s", clip.id, reason)
            rows.append(_dropped_row("recipe", self._manifest, clip, _code(reason), reason))
        replay_manifest = (recipe.replay.manifest if recipe.replay is not None else None) or None
        train, validation = (
            self._check_from_elsewhere(clips, name, replay_manifest, rows, logger)
            for name, clips in (("train", prepared.train), ("validation", prepared.validation))
        )
        reasons = Counter(r["code"] for r in rows)
        if not train:
            raise TTSAdaptError(
                f"data recipe {recipe.name!r} left no training clips "
                f"({len(rows)} dropped: {dict(reasons)})"
            )
        report = dict(prepared.report)
        report["n_train"] = len(train)
        report["n_validation"] = len(validation)
        report["dropped"] = len(rows)
        report["dropped_by_reason"] = dict(sorted(reasons.items()))
        return TrainingData(train, validation), report, rows

    def _check_from_elsewhere(
        self,
        clips: list[Clip],
        split: str,
        manifest: Any,
        rows: list[dict[str, Any]],
        logger: logging.Logger,
    ) -> list[Clip]:
        """``clips`` less those brought in from elsewhere (e.g. a replay ``manifest``) that fail
        the audio check every suite clip passed; a row for each goes to ``rows``."""
        from .data.manifest import RUN_CHECKS, AudioCheckCache, check_clips

        checked = {c.audio for c in self.clips()}
        outside = [c for c in clips if c.audio not in checked]
        if not outside:
            return clips
        cache = AudioCheckCache()
        try:
            _, bad = check_clips(outside, **RUN_CHECKS, cache=cache)
        finally:
            cache.close()
        by_id = {c.id: c for c in outside}
        for q in bad:
            logger.warning("dropped %s (%s clip): %s", q.id, split, q.reason)
            clip = by_id[q.id] if q.id is not None else None  # every checked clip has an id
            row = _dropped_row("check", manifest, clip, q.code, q.reason)
            row["line"] = q.line or row["line"]
            rows.append(row)
        bad_ids = {q.id for q in bad}
        return [c for c in clips if c.id not in bad_ids]

    def _backbone_drops(
        self,
        backbone: Backbone,
        data: TrainingData,
        report: dict[str, Any],
        logger: logging.Logger,
    ) -> list[dict[str, Any]]:
        """Clips the backbone could not turn into training examples (its ``prepare_errors``):
        logged to ``run.log``, counted in the training report, one row each for the drop file."""
        errors = getattr(backbone, "prepare_errors", None) or []
        by_id = {
            c.id: (c, split)
            for split, cs in (("train", data.train), ("validation", data.validation))
            for c in cs
        }
        rows, seen = [], set()
        for clip_id, reason in errors:
            if clip_id in seen:
                continue
            seen.add(clip_id)
            clip, split = by_id.get(clip_id, (None, None))
            logger.warning("backbone %s dropped clip %s: %s", backbone.name, clip_id, reason)
            row = _dropped_row("backbone", self._manifest, clip, BACKBONE_REJECTED, str(reason))
            row["id"] = clip_id
            row["split"] = split
            rows.append(row)
        if rows:
            n_train = sum(r["split"] == "train" for r in rows)
            n_val = sum(r["split"] == "validation" for r in rows)
            report["n_train"] = report.get("n_train", len(data.train)) - n_train
            report["n_validation"] = report.get("n_validation", len(data.validation)) - n_val
            report["dropped"] = int(report.get("dropped") or 0) + len(rows)
            by_reason = dict(report.get("dropped_by_reason") or {})
            by_reason[BACKBONE_REJECTED] = by_reason.get(BACKBONE_REJECTED, 0) + len(rows)
            report["dropped_by_reason"] = dict(sorted(by_reason.items()))
        return rows

    def _manifest_drops(self) -> list[dict[str, Any]]:
        return [
            {
                "stage": "manifest",
                "manifest": str(self._manifest) if self._manifest else None,
                "line": q.line,
                "id": q.id,
                "path": q.path,
                "split": None,
                "code": q.code,
                "reason": q.reason,
            }
            for q in self._quarantine
        ]

    def _write_drops(
        self, run_dir: Path, summary: dict[str, Any], rows: list[dict[str, Any]]
    ) -> None:
        """``dropped_clips.jsonl`` and the counts in ``run.json``'s ``data``."""
        atomic_write_jsonl(run_dir / DROPPED_CLIPS_FILE, rows)
        data = summary.setdefault("data", {})
        data["dropped"] = dict(sorted(Counter(r["code"] for r in rows).items()))
        data["n_dropped"] = len(rows)
        data["dropped_by_stage"] = dict(sorted(Counter(r["stage"] for r in rows).items()))
        data["dropped_clips"] = DROPPED_CLIPS_FILE

    def metric_instances(self, names: Sequence[str] | None = None) -> dict[str, Metric]:
        """The suite's metrics (all, or ``names``) as the process's shared instances
        (:func:`ttsadapt.evaluation.metric_instance`), with the suite's parameters."""
        specs = {
            m["name"]: m["params"] for m in (self.suite.runs[0].metrics if self.suite.runs else [])
        }
        wanted = list(specs) if names is None else list(names)
        return {n: self.evaluator.metric(n, specs[n]) for n in wanted}

    # ------------------------------------------------------------------ one run

    def _logger(self, run: Run, run_dir: Path) -> logging.Logger:
        logger = logging.getLogger(f"ttsadapt.run.{run.run_id}")
        logger.setLevel(logging.INFO)
        logger.propagate = False
        for h in list(logger.handlers):
            logger.removeHandler(h)
            h.close()
        handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        return logger

    def _execute(self, run: Run) -> tuple[str, str | None]:
        """One run, stage by stage, each timed in ``run.json``'s ``timings``; a stage that raises
        fails the run, which is recorded as failed."""
        with torch_threads(self._threads_per_run()):
            return self._execute_stages(run)

    def _threads_per_run(self) -> int | None:
        """The suite's ``[resources] num_cpus`` as torch's thread count (None: leave it). Float
        sums depend on how work is split across threads, so a run's audio differs at float level
        between thread counts; pinning it makes every executor give the same numbers."""
        resources = self.suite.spec.resources
        if resources is None or resources.num_cpus is None:
            return None
        return max(1, int(resources.num_cpus))

    def _execute_stages(self, run: Run) -> tuple[str, str | None]:
        run_dir, config, summary, logger = self._open(run)
        timings: dict[str, float] = {}
        records: list[dict[str, Any]] = []
        status, error = "ok", None
        t_start = time.perf_counter()
        try:
            seed_everything(run.seed)
            params = self._method_params(run)
            with _timed(timings, "load_s"):
                backbone = self._load_backbone(run)
            method: Method = self.registry.get("method", run.method)(**params)
            eval_set, drops = self._prepare_data(run, run_dir, summary)
            with _timed(timings, "adapt_s"):
                self._adapt_stage(run, run_dir, backbone, method, summary, drops, logger)
            with _timed(timings, "synth_s"):
                synthesis = self._synthesise(run, backbone, eval_set, run_dir, logger)
            del backbone
            with _timed(timings, "score_s"):  # scoring and recording
                scores = self._score(synthesis.items, synthesis.rows, run.metrics)
                records = self._record(run, run_dir, synthesis.items, scores, summary, run.metrics)
                records.append(self._record_latency(run, run_dir, synthesis, summary))
        except Exception as exc:  # noqa: BLE001 - a failure fails the run (recorded); suite goes on
            status, error = self._record_failure(run_dir, exc, logger)
        timings["total_s"] = time.perf_counter() - t_start
        summary.update(status=status, error=error, timings=timings)
        self._close(run_dir, config, summary, records, logger)
        return status, error

    def _method_params(self, run: Run) -> dict[str, Any]:
        """The run's method params; a run planned ``after`` another gets that run's folder as
        ``init_run``, and a source that did not finish ok fails this run, naming the source."""
        if not run.after:
            return run.method_params
        source = run.after["run_id"]
        status = self.store.status(source)
        if status != "ok":
            error_file = self.store.run_dir(source) / "error.txt"
            why = {"missing": "has not run", "partial": "did not finish"}.get(status, status)
            if status == "failed" and error_file.is_file():
                lines = error_file.read_text(encoding="utf-8").strip().splitlines()
                why = f"failed ({lines[0] if lines else 'no error message'})"
            raise TTSAdaptError(
                f"run {run.run_id} starts after run {source} ({run.after['label']}), which {why}; "
                "nothing to start from"
            )
        return {**run.method_params, "init_run": str(self.store.run_dir(source))}

    def _open(self, run: Run) -> tuple[Path, dict[str, Any], dict[str, Any], logging.Logger]:
        """A fresh run folder with ``config.json`` and ``run.log``; fires ``ttsadapt_run_started``.
        Returns the folder, the config the hooks see, the summary ``run.json`` will hold, the
        run's logger."""
        run_dir = self.store.reset(run.run_id)
        atomic_write_json(run_dir / "config.json", {**run.config(), "device": self.device})
        config = {**run.config(), "run_dir": str(run_dir), "device": self.device}
        logger = self._logger(run, run_dir)
        logger.info("run %s: %s", run.run_id, run.label())
        self.registry.pm.hook.ttsadapt_run_started(run=config)
        summary: dict[str, Any] = {  # written through RunSummary (which adds ``schema``)
            **run.config(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "provenance": provenance(self.device),
        }
        return run_dir, config, summary, logger

    @staticmethod
    def _record_failure(
        run_dir: Path, exc: Exception, logger: logging.Logger
    ) -> tuple[str, str | None]:
        """``error.txt`` and ``traceback.txt`` of a failed run (call inside the ``except``)."""
        error = f"{type(exc).__name__}: {exc}"
        logger.error("run failed: %s", error)
        (run_dir / "error.txt").write_text(error + "\n", encoding="utf-8")
        (run_dir / "traceback.txt").write_text(traceback.format_exc(), encoding="utf-8")
        return "failed", error

    def _close(
        self,
        run_dir: Path,
        config: dict[str, Any],
        summary: dict[str, Any],
        records: list[dict[str, Any]],
        logger: logging.Logger,
    ) -> None:
        """``run.json`` (the run is done, ok or failed), ``ttsadapt_run_finished``, log closed."""
        summary.update(
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            metrics_recorded=[r["metric"] for r in records],
        )
        self.store.mark_done(run_dir, summary["status"], _run_summary(run_dir, summary))
        self.registry.pm.hook.ttsadapt_run_finished(
            run=config, status=summary["status"], records=records
        )
        for h in list(logger.handlers):
            logger.removeHandler(h)
            h.close()

    def _load_backbone(self, run: Run) -> Backbone:
        backbone = self.registry.get("backbone", run.backbone)(**run.backbone_params)
        backbone.load(self.device)
        return backbone

    # ------------------------------------------------------------------ 2. adapt

    def _adapt_stage(
        self,
        run: Run,
        run_dir: Path,
        backbone: Backbone,
        method: Method,
        summary: dict[str, Any],
        drops: list[dict[str, Any]],
        logger: logging.Logger,
    ) -> None:
        """Stage 2: adapt the backbone, in the run folder or, for runs that share a training,
        once per ``train_id`` (:meth:`_adapt_shared`); ``summary["adapt"]`` says what it cost."""
        if self._shares_training(run, backbone, method):
            self._adapt_shared(run, run_dir, backbone, method, summary, drops, logger)
            return
        result = self._adapt(run, run_dir, run_dir, backbone, method, summary, drops, logger)
        self._save_adapt_result(run_dir, backbone, method, result, logger)
        summary["adapt"] = _adapt_summary(result)

    def _adapt(
        self,
        run: Run,
        run_dir: Path,
        work_dir: Path,
        backbone: Backbone,
        method: Method,
        summary: dict[str, Any],
        drops: list[dict[str, Any]],
        logger: logging.Logger,
    ) -> AdaptResult:
        """Prepare the training data and let the method adapt the backbone; the method works in
        ``work_dir`` (its checkpoints, its files). ``drops`` grows by the clips set aside."""
        report: dict[str, Any] = {}
        if method.trains:
            data, report, recipe_drops = self.training_data(run, backbone, logger)
            summary["data"]["training"] = report
            drops += recipe_drops
            self._write_drops(run_dir, summary, drops)
        else:
            data = TrainingData([], [])
        ctx = RunContext(
            run_dir=work_dir,
            seed=run.seed,
            device=self.device,
            logger=logger,
            progress=_progress,
            dev_score=self._dev_scorer(data.validation) if method.trains else None,
            dev_metric=self.suite.spec.evaluation.dev_metric,
            trackers=self.suite.spec.tracking.trackers,
            tracker_project=self.suite.spec.tracking.project or self.suite.spec.name,
            hooks=self.registry.pm.hook,
        )
        try:
            return method.adapt(backbone, data, ctx)
        finally:  # what the backbone set aside is counted even when training fails
            if method.trains:
                drops += self._backbone_drops(backbone, data, report, logger)
                self._write_drops(run_dir, summary, drops)

    @staticmethod
    def _shares_training(run: Run, backbone: Backbone, method: Method) -> bool:
        """A run with a synthesis setting trains once per ``train_id`` when its backbone can save
        and load adapters; other runs train in their own folder, as always."""
        cls = type(backbone)
        return bool(
            run.synthesis
            and method.trains
            and cls.save_adapter is not Backbone.save_adapter
            and cls.load_adapter is not Backbone.load_adapter
        )

    def _adapt_shared(
        self,
        run: Run,
        run_dir: Path,
        backbone: Backbone,
        method: Method,
        summary: dict[str, Any],
        drops: list[dict[str, Any]],
        logger: logging.Logger,
    ) -> None:
        """Adapt once per training identity: the first run of a ``train_id`` trains in
        ``trained/<train_id>/`` and saves the adapter there; every other run (another synthesis
        setting, now or in a later session) loads that adapter instead of training. The run
        folder gets the training's ``checkpoints.json`` and ``curves.jsonl``, an ``adapter`` link
        to the shared adapter and ``run.json``'s ``training``: {train_id, dir, reused}."""
        with self.store.claim_trained(run.train_id) as trained_dir:
            info = self.store.trained_info(run.train_id)
            reused = info is not None
            if info is None:
                logger.info("training %s in %s", run.train_id, trained_dir)
                self.store.reset_trained(run.train_id)
                result = self._adapt(
                    run, run_dir, trained_dir, backbone, method, summary, drops, logger
                )
                self._save_adapt_result(trained_dir, backbone, method, result, logger)
                summary["adapt"] = _adapt_summary(result)
                if (trained_dir / "adapter").is_dir():
                    info = {
                        "train_id": run.train_id,
                        "trained_by": run.run_id,
                        "adapt": summary["adapt"],
                        "data": summary["data"],
                        "drops": drops,
                    }
                    self.store.mark_trained(trained_dir, info)
                else:
                    logger.warning("no adapter saved: runs of %s will train again", run.train_id)
            else:
                logger.info("reusing the adapter trained for %s (no training)", run.train_id)
                backbone.load_adapter(trained_dir / "adapter")
                summary["adapt"] = info["adapt"]
                if "training" in (info.get("data") or {}):
                    summary["data"]["training"] = info["data"]["training"]
                drops[:] = info["drops"]
                self._write_drops(run_dir, summary, drops)
            for name in ("checkpoints.json", "curves.jsonl"):
                if (trained_dir / name).is_file():
                    shutil.copyfile(trained_dir / name, run_dir / name)
        link = run_dir / "adapter"
        if (trained_dir / "adapter").is_dir() and not link.exists():
            link.symlink_to(os.path.relpath(trained_dir / "adapter", run_dir))
        summary["training"] = {
            "train_id": run.train_id,
            "dir": os.path.relpath(trained_dir, self.store.suite_dir),
            "reused": reused,
        }

    def _dev_scorer(self, validation: list[Clip]):
        """The dev-metric callback (:func:`ttsadapt.evaluation.dev_scorer`) on the first
        ``dev_items`` validation clips, or ``None`` when the suite selects no checkpoint by it."""
        spec = self.suite.spec.evaluation
        if not spec.dev_metric or spec.dev_items == 0 or not validation:
            return None
        dev_clips = sorted(validation, key=lambda c: c.id)[: spec.dev_items]
        metric = self.metric_instances([spec.dev_metric])[spec.dev_metric]
        dev_set = EvalSet(dev_clips, self.eval_set().prompts, [])
        return dev_scorer(
            self.evaluator, spec.dev_metric, metric, dev_set, self.device, spec.batch_size
        )

    def _save_adapt_result(
        self, run_dir: Path, backbone: Backbone, method: Method, result: AdaptResult, logger
    ) -> None:
        if result.checkpoints or result.selected:
            index = run_dir / "checkpoints.json"
            CheckpointIndex.from_dict(
                {
                    "checkpoints": [c.__dict__ for c in result.checkpoints],
                    "selected": result.selected,
                    "dev_metric": self.suite.spec.evaluation.dev_metric,
                },
                source=index,
            ).to_disk(index)
        curves = run_dir / "curves.jsonl"
        if result.curves and not curves.exists():
            write_rows(curves, [CurveRow.from_dict(r, source=curves) for r in result.curves])
        if method.trains and not result.adapter_bytes:
            adapter_dir = run_dir / "adapter"
            try:
                backbone.save_adapter(adapter_dir)
            except NotImplementedError:
                logger.warning("backbone %s cannot save adapters", backbone.name)
                return
            result.adapter_bytes = _folder_bytes(adapter_dir)

    # ------------------------------------------------------------------ 3. synthesise

    def _synthesise(
        self, run: Run, backbone: Backbone, eval_set: EvalSet, run_dir: Path, logger
    ) -> Synthesis:
        """Stage 3: speak the evaluation set with the run's synthesis setting
        (:func:`ttsadapt.evaluation.synthesize`); the audio goes to ``audio/<id>.wav`` and one
        row per utterance (timings, error) to ``synthesis.jsonl``."""
        spec = self.suite.spec.evaluation
        synthesis = synthesize(
            backbone, eval_set, self.device, spec.batch_size, run.synthesis, logger, progress=True
        )
        for item in synthesis.spoken():
            path = run_dir / "audio" / f"{_safe(item.id)}.wav"
            write_audio(path, item.audio, synthesis.sample_rate)
        path = run_dir / "synthesis.jsonl"
        write_rows(path, [SynthesisRow.from_dict(r, source=path) for r in synthesis.rows])
        return synthesis

    # ------------------------------------------------------------------ 4. score

    def _score(
        self, items: list[EvalItem], synth_rows: list[dict[str, Any]], metrics: list[dict[str, Any]]
    ) -> dict[str, list[ItemScore]]:
        """Stage 4: ``{metric: [ItemScore per item, in order]}`` through the shared scorer; an item
        whose synthesis failed is not scored and keeps the synthesis error."""
        instances = self.metric_instances([m["name"] for m in metrics])
        synth_errors = {r["item"]: r["error"] for r in synth_rows if r.get("error")}
        scored = self.evaluator.score([it for it in items if it.id not in synth_errors], instances)
        out = {}
        for name in instances:
            by_id = {s.id: s for s in scored[name]}
            out[name] = [
                by_id.get(it.id) or ItemScore(it.id, error=synth_errors.get(it.id, "not scored"))
                for it in items
            ]
        return out

    # ------------------------------------------------------------------ 5. record

    def _record(
        self,
        run: Run,
        run_dir: Path,
        items: list[EvalItem],
        scores: dict[str, list[ItemScore]],
        summary: dict[str, Any],
        metrics: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Stage 5: per metric, its rows (``scores/<metric>.jsonl``) and its record
        (``records/<metric>.json``, :func:`build_record`)."""
        instances = self.metric_instances([m["name"] for m in metrics])
        meta = {it.id: it for it in items}
        records = []
        for m in metrics:
            name = m["name"]
            write_score_rows(run_dir / "scores" / f"{name}.jsonl", _score_rows(scores[name], meta))
            adapt = summary.get("adapt", {})
            record = metric_record(
                run, instances[name], m, scores[name], adapt, summary["provenance"]
            )
            record.to_disk(run_dir / "records" / f"{name}.json")
            records.append(record.to_dict())
        return records

    def _record_latency(
        self, run: Run, run_dir: Path, synthesis: Synthesis, summary: dict[str, Any]
    ) -> dict[str, Any]:
        """The ``latency`` record and its per-utterance rows, from the synthesis timings."""
        from .latency import LATENCY, LatencyMetric, latency_values

        scores = []
        for row in synthesis.rows:
            values = {} if row.get("error") else latency_values(row)
            error = row.get("error") or (None if values else "not measured")
            scores.append(ItemScore(row["item"], values if error is None else {}, error=error))
        measured = {k for sc in scores for k in sc.values}
        # an output nothing measured (peak_gpu_mb on CPU) is left out, not shown empty: the
        # record is built from the latency metric narrowed to the measured outputs
        measured_outputs = tuple(o for o in LatencyMetric.outputs if o.name in measured)
        narrowed = type(
            LatencyMetric.__name__,
            (LatencyMetric,),
            {"outputs": measured_outputs or LatencyMetric.outputs[:1]},
        )
        metric = narrowed()
        meta = {it.id: it for it in synthesis.items}
        write_score_rows(run_dir / "scores" / f"{LATENCY}.jsonl", _score_rows(scores, meta))
        spec = {
            "params": {"device": self.device, "batch_size": self.suite.spec.evaluation.batch_size}
        }
        record = metric_record(
            run, metric, spec, scores, summary.get("adapt", {}), summary["provenance"]
        )
        record.in_mean_rank = False  # a cost, not a quality: shown, not ranked with the rest
        record.to_disk(run_dir / "records" / f"{LATENCY}.json")
        return record.to_dict()

    def _rescore(self, run: Run, run_dir: Path) -> tuple[str, str | None]:
        """Score and record the metrics a finished run lacks, from its saved audio."""
        missing = self._missing_metrics(run)
        summary = RunSummary.from_disk(run_dir / "run.json").to_dict()
        try:
            eval_set = self.eval_set_for(run)
            synthesis = read_rows(SynthesisRow, run_dir / "synthesis.jsonl")
            synth_rows = [row.to_dict() for row in synthesis]
            by_id = {c.id: c for c in eval_set.clips}
            items = []
            for row in synth_rows:
                clip = by_id.get(row["item"])
                if clip is None:
                    continue
                audio, sr = None, 0
                if not row.get("error"):
                    audio, sr = load_audio(run_dir / "audio" / f"{_safe(clip.id)}.wav")
                items.append(eval_item(clip, eval_set.prompts, audio, sr))
            scores = self._score(items, synth_rows, missing)
            records = self._record(run, run_dir, items, scores, summary, missing)
        except Exception as exc:  # noqa: BLE001 - a failed rescoring is reported, suite goes on
            return "failed", f"rescoring failed: {type(exc).__name__}: {exc}"
        summary["metrics_recorded"] = sorted(
            set(summary.get("metrics_recorded", [])) | {r["metric"] for r in records}
        )
        self.store.mark_done(run_dir, summary.get("status", "ok"), _run_summary(run_dir, summary))
        return "ok", None


def build_record(
    run: Run,
    metric: Metric,
    metric_spec: dict[str, Any],
    scores: list[ItemScore],
    adapt: dict[str, Any],
    prov: dict[str, Any],
) -> dict[str, Any]:
    """:func:`metric_record` as the JSON object ``records/<metric>.json`` holds."""
    return metric_record(run, metric, metric_spec, scores, adapt, prov).to_dict()


def metric_record(
    run: Run,
    metric: Metric,
    metric_spec: dict[str, Any],
    scores: list[ItemScore],
    adapt: dict[str, Any],
    prov: dict[str, Any],
) -> MetricRecord:
    """One record per run × metric: each output's mean with a 95 % bootstrap CI over utterances."""
    from .stats import bootstrap_ci

    outputs: dict[str, Any] = {}
    for out in metric.outputs:
        vals = np.array(
            [s.values[out.name] for s in scores if s.ok and out.name in s.values], dtype=float
        )
        vals = vals[np.isfinite(vals)]
        if vals.size:
            lo, hi = bootstrap_ci(vals, seed=run.seed) if vals.size > 1 else (vals[0], vals[0])
            mean = float(vals.mean())
        else:
            lo = hi = mean = None
        outputs[out.name] = {
            "mean": mean,
            "ci_low": None if lo is None else float(lo),
            "ci_high": None if hi is None else float(hi),
            "n": int(vals.size),
            "higher_is_better": out.higher_is_better,
            "range": list(out.range),
            "unit": out.unit,
        }
    errors = Counter(s.error or "" for s in scores if not s.ok)
    return MetricRecord.from_dict(
        {
            "suite": run.suite,
            "suite_version": run.suite_version,
            "run_id": run.run_id,
            "backbone": run.backbone,
            "backbone_version": run.backbone_version,
            "backbone_params": run.backbone_params,
            "method": run.method,
            "method_version": run.method_version,
            "method_params": run.method_params,
            "is_anchor": run.is_anchor,
            "data_recipe": run.data_recipe,
            "seed": run.seed,
            # the [synthesis] setting ({}: the backbone's defaults) and the training it evaluates
            "synthesis_settings": run.synthesis,
            "train_id": run.train_id or run.run_id,
            **({"after": run.after} if run.after else {}),  # the run it started from (a chain)
            "metric": metric.name,
            "metric_version": metric.version,
            "metric_params": metric_spec["params"],
            # packages and weight-file hashes of the metric's models (also in its score cache key)
            "metric_provenance": metric.model_provenance(),
            "headline": metric.headline().name,
            "outputs": outputs,
            "n_items": len(scores),
            "n_errors": sum(n for e, n in errors.items() if not e.startswith(NOT_APPLICABLE)),
            "n_not_applicable": sum(n for e, n in errors.items() if e.startswith(NOT_APPLICABLE)),
            "errors": dict(errors),
            "trainable_params": adapt.get("trainable_params"),
            "total_params": adapt.get("total_params"),
            "adapter_bytes": adapt.get("adapter_bytes", 0),
            "status": "ok",
            "provenance": prov,
        }
    )


def _run_summary(run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """``run.json`` as :class:`RunSummary` writes it (its ``schema`` added, its fields checked)."""
    return RunSummary.from_dict(summary, source=run_dir / "run.json").to_dict()


def _adapt_summary(result: AdaptResult) -> dict[str, Any]:
    return {
        "trainable_params": result.trainable_params,
        "total_params": result.total_params,
        "adapter_bytes": result.adapter_bytes,
        "selected": result.selected,
        "stats": result.stats,
    }


def _code(reason: str) -> str:
    """The reason code of a filter's reason (``"duration: 0.4 s shorter than …"`` → ``duration``)."""
    return reason.split(":", 1)[0].strip() if ":" in reason else reason


def _dropped_row(
    stage: str, manifest: Any, clip: Clip | None, code: str, reason: str
) -> dict[str, Any]:
    extra = clip.extra if clip is not None else {}
    return {
        "stage": stage,
        "manifest": str(manifest) if manifest else None,
        "line": extra.get("line"),
        "id": clip.id if clip is not None else None,
        "path": str(clip.audio) if clip is not None else None,
        "split": clip.split if clip is not None else None,
        "code": code,
        "reason": reason,
    }


def _score_rows(scores: list[ItemScore], meta: dict[str, EvalItem]) -> Iterator[ScoreRow]:
    """The ``scores/<metric>.jsonl`` rows: item, speaker, language, values, error (and extra)."""
    for s in scores:
        item = meta.get(s.id)
        yield ScoreRow(
            item=s.id,
            speaker=item.speaker if item is not None else None,
            language=item.language if item is not None else None,
            values=s.values,
            error=s.error,
            **({"extra": s.extra} if s.extra else {}),
        )


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """``timings[key]``: the seconds the block took (not set when it raises)."""
    t = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - t


def _progress(total: int | None = None, desc: str = "", **kw: Any):
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, **kw)


def _safe(item_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in item_id)


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
