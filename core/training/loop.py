"""The shared training loop on HF Accelerate.

One :class:`Trainer` per run: AdamW with warm-up + cosine decay, gradient accumulation, clipping,
autocast (bf16 on GPU, fp32 on CPU), validation and checkpoints every N steps, resume from the last
complete checkpoint, deterministic data order, a progress bar with the losses, curves written to
``curves.jsonl`` (and ``curves.png``), and checkpoint selection by validation loss and by the
runner's perceptual dev score.

The same curve rows go to experiment trackers through Accelerate's integration
(``Accelerator(log_with=…)``, ``init_trackers``, ``log``): TensorBoard by default, offline, in
``<run_dir>/tensorboard/``; Weights & Biases or MLflow when installed and chosen
(``RunContext.trackers``; not a run parameter, so the choice never changes a run's id). After each
logged step the ``ttsadapt_training_step`` hook is called, when some plugin implements it.

The backbone's own ``loss(batch)`` is called on ``backbone.module``. On one process the module is
not wrapped. With several processes (``torchrun --nproc_per_node N`` or ``accelerate launch
--num_processes N``, one process per GPU, or CPU processes with gloo) the module is prepared for
distributed data parallel by ``accelerator.prepare_model`` and stands in for ``backbone.module``
while the losses are computed and back-propagated (attributes the backbone reads from its module
are passed through), so DDP averages the gradients, overlapping with the backward pass (no sync on
the first ``grad_accum - 1`` micro-batches). Process ``p`` of ``P`` takes micro-batches
``p, P + p, 2P + p, …`` of the run's single-process order (:meth:`Trainer._batch_at`), so ``P``
processes with ``grad_accum = a`` see the same global batches as one process with
``grad_accum = P·a``; the logged losses are averaged over processes. Only the main process writes
curves, checkpoints and the checkpoint index; every process reads checkpoints (resume, the selected
one) from the main process's run folder, whose path it receives when training starts; the
perceptual dev score is computed on the main process and broadcast.
"""

from __future__ import annotations

import contextlib
import json
import math
import resource
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..components import Backbone, CheckpointInfo, RunContext
from ..errors import ConfigError, TTSAdaptError
from ..records import read_jsonl
from ..results import CheckpointIndex, CurveRow, write_rows
from . import checkpoint as ckpt
from .config import TrainingParams
from .errors import TrainingDivergedError
from .optim import build_optimizer, build_scheduler
from .seeding import rng_state, seed_everything, set_rng_state


@dataclass
class TrainOutcome:
    """What :meth:`Trainer.fit` returns."""

    checkpoints: list[CheckpointInfo]
    selected: dict[str, int | None]  # by_val_loss, by_dev_metric, used
    curves: list[dict[str, Any]]
    stats: dict[str, Any] = field(default_factory=dict)


# the experiment trackers a run may choose, with the package each needs
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
TENSORBOARD_DIR = "tensorboard"  # <run_dir>/tensorboard/: TensorBoard's event files


def _tracker_available(name: str) -> bool:
    from accelerate.utils import is_mlflow_available, is_wandb_available

    if name == "tensorboard":  # Accelerate's tracker writes through torch.utils.tensorboard
        import importlib.util

        return importlib.util.find_spec("tensorboard") is not None
    return {"wandb": is_wandb_available, "mlflow": is_mlflow_available}[name]()


def resolve_trackers(chosen: Sequence[str] | None, log: Any = None) -> list[str]:
    """The trackers a run logs to: ``None`` = TensorBoard when installed; a list is checked (an
    unknown name, or a chosen tracker whose package is missing, is a :class:`ConfigError`)."""
    if chosen is None:
        if _tracker_available("tensorboard"):
            return ["tensorboard"]
        if log is not None:
            log.warning("tensorboard is not installed: training curves go to curves.jsonl only")
        return []
    if isinstance(chosen, str):
        chosen = [chosen]
    names: list[str] = []
    for name in chosen:
        if name not in TRACKERS:
            raise ConfigError(
                f"unknown tracker {name!r}; known trackers: {', '.join(TRACKERS)} "
                "(an empty list turns tracking off)"
            )
        if not _tracker_available(name):
            raise ConfigError(
                f"tracker {name!r} was chosen but the {TRACKERS[name]!r} package is not "
                f"installed: pip install {TRACKERS[name]}"
            )
        if name not in names:
            names.append(name)
    return names


def _make_accelerator(
    device: str,
    mixed_precision: str,
    trackers: Sequence[str] = (),
    run_dir: Path | None = None,
    purge_step: int | None = None,
):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    on_gpu = device.startswith("cuda")
    if mixed_precision == "auto":
        mixed_precision = "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no"
    if not on_gpu:
        mixed_precision = "no"  # fp32 on CPU
    if PartialState._shared_state and PartialState().num_processes == 1:
        AcceleratorState._reset_state(reset_partial_state=True)  # one run after another in-process
    log_with: list[Any] = []
    for name in trackers:
        if name == "tensorboard":  # an instance: its folder is <run_dir>/tensorboard, whatever
            # the project is called; purge_step hides the steps a killed session logged past
            # the checkpoint it resumes from
            from accelerate.tracking import TensorBoardTracker

            extra = {} if purge_step is None else {"purge_step": purge_step}
            log_with.append(TensorBoardTracker(TENSORBOARD_DIR, str(run_dir), **extra))
        else:
            log_with.append(name)
    return Accelerator(cpu=not on_gpu, mixed_precision=mixed_precision, log_with=log_with or None)


def _pass_through(wrapped: torch.nn.Module) -> torch.nn.Module:
    """Let attribute reads on a DDP wrapper fall through to the wrapped module (backbones call
    ``self.module.get_input_embeddings()`` and the like while computing their loss)."""
    base = type(wrapped)

    def __getattr__(self, name):
        try:
            return base.__getattr__(self, name)
        except AttributeError:
            return getattr(base.__getattr__(self, "module"), name)

    wrapped.__class__ = type(f"PassThrough{base.__name__}", (base,), {"__getattr__": __getattr__})
    return wrapped


class Trainer:
    """Trains ``backbone.module``'s trainable parameters on prepared examples.

    :param backbone: a loaded backbone whose trainable parameters are already chosen.
    :param train_examples: ``backbone.prepare(train_clips)``.
    :param val_examples: ``backbone.prepare(validation_clips)`` (may be empty).
    :param cfg: the shared hyper-parameters.
    :param ctx: run folder, seed, device, logger, progress and the optional dev scorer.
    """

    def __init__(
        self,
        backbone: Backbone,
        train_examples: Sequence[Any],
        val_examples: Sequence[Any],
        cfg: TrainingParams,
        ctx: RunContext,
    ) -> None:
        if not train_examples:
            raise ConfigError("no training examples: the data recipe left nothing to train on")
        if cfg.select == "dev_metric" and ctx.dev_score is None:
            raise ConfigError(
                "select = 'dev_metric' needs a dev-set metric (the suite's dev_metric), but none "
                "is configured; set select = 'val_loss' or configure a dev metric"
            )
        self.backbone = backbone
        self.module: torch.nn.Module = backbone.module
        self.train_examples = list(train_examples)
        self.val_examples = list(val_examples)
        self.cfg = cfg
        self.ctx = ctx
        self.log = ctx.logger
        seed_everything(ctx.seed, cfg.deterministic)
        self.run_id = Path(ctx.run_dir).name
        self.trackers = resolve_trackers(ctx.trackers, self.log)
        purge_step = None
        if "tensorboard" in self.trackers and cfg.resume:
            last = ckpt.last_resumable(Path(ctx.checkpoint_dir))
            purge_step = None if last is None else last.step + 1
        self.accelerator = _make_accelerator(
            str(ctx.device), cfg.mixed_precision, self.trackers, Path(ctx.run_dir), purge_step
        )
        self._tracking = False  # trackers started (main process, in :meth:`fit`)
        # the per-step hook, looked up once: None when no plugin implements it
        step_hook = getattr(ctx.hooks, "ttsadapt_training_step", None)
        self._step_hook = step_hook if step_hook is not None and step_hook.get_hookimpls() else None
        self.distributed = self.accelerator.num_processes > 1
        self.checkpoint_dir = Path(ctx.checkpoint_dir)  # read by every process, written by main
        if self.distributed:
            self._handshake()
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        if not self.params:
            raise ConfigError("the backbone has no trainable parameters: nothing to train")
        # the module the losses are computed through: DDP-wrapped with several processes
        self._model: torch.nn.Module = self.module
        if self.distributed:
            self._model = _pass_through(self.accelerator.prepare_model(self.module))
        self.optimizer = self.accelerator.prepare_optimizer(
            build_optimizer(self.params, cfg), device_placement=False
        )
        self.scheduler = build_scheduler(self.optimizer.optimizer, cfg)
        # one process, no gradient scaler: call torch directly (see :meth:`step`)
        self._plain = not self.distributed and self.accelerator.scaler is None
        self._optim = self.optimizer.optimizer if self._plain else self.optimizer
        self._autocast = (
            contextlib.nullcontext
            if self.accelerator.mixed_precision == "no"
            else self.accelerator.autocast
        )
        self._bar_n = 0
        self.step_idx = 0
        self.n_batches = math.ceil(len(self.train_examples) / cfg.batch_size)
        self._perm_epoch = -1
        self._perm: list[int] = []
        self.curves_path = Path(ctx.run_dir) / "curves.jsonl"
        self.curves: list[dict[str, Any]] = []
        self.checkpoints: list[CheckpointInfo] = []
        self.step_time_s = 0.0
        self.steps_this_session = 0
        self._last_train: dict[str, float] = {}

    # ------------------------------------------------------------------ processes

    def _handshake(self) -> None:
        """Every process must train the same run; the others read the main one's checkpoints."""
        from accelerate.utils import broadcast_object_list, gather_object

        names = gather_object([Path(self.ctx.run_dir).name])
        if len(set(names)) != 1:
            raise TTSAdaptError(
                "the processes of a multi-process launch are training different runs "
                f"({', '.join(f'rank {i}: {n}' for i, n in enumerate(names))}); launch them "
                "with the same suite, results folder and --only"
            )
        box = [str(Path(self.ctx.checkpoint_dir).resolve())]
        broadcast_object_list(box, from_process=0)
        self.checkpoint_dir = Path(box[0])

    @contextlib.contextmanager
    def _through_model(self):
        """``backbone.module`` is the (DDP) training model for the duration."""
        if self._model is self.module:
            yield
            return
        self.backbone.module = self._model
        try:
            yield
        finally:
            self.backbone.module = self.module

    # ------------------------------------------------------------------ data order

    def _batch_at(self, k: int) -> Any:
        """Micro-batch ``k`` of the run: a fixed function of the seed, so resume needs no state."""
        acc = self.accelerator
        k = k * acc.num_processes + acc.process_index
        epoch, index = divmod(k, self.n_batches)
        if epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(self.ctx.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(len(self.train_examples), generator=gen).tolist()
            self._perm_epoch = epoch
        bs = self.cfg.batch_size
        idx = self._perm[index * bs : (index + 1) * bs]
        return self.backbone.collate([self.train_examples[i] for i in idx])

    # ------------------------------------------------------------------ steps

    def step(self) -> dict[str, float]:
        """One optimizer step over ``grad_accum`` micro-batches; returns the mean losses.

        One host synchronisation per step (the losses and the gradient norm come back together,
        before the update, so a non-finite loss never reaches the weights). On one process without
        a gradient scaler the torch calls are made directly: Accelerate's per-step wrappers add
        nothing there but Python overhead (package look-ups, an extra loss division).
        """
        t0 = time.perf_counter()
        cfg, acc = self.cfg, self.accelerator
        if not self.module.training:
            self.module.train()
        sums: dict[str, torch.Tensor] = {}
        for j in range(cfg.grad_accum):
            batch = self._batch_at(self.step_idx * cfg.grad_accum + j)
            # DDP all-reduces the gradients during the last micro-batch's backward only
            last = j == cfg.grad_accum - 1
            sync = (
                contextlib.nullcontext()
                if last or not self.distributed
                else acc.no_sync(self._model)
            )
            with sync, self._through_model():
                with self._autocast():
                    parts = self.backbone.loss(batch)
                loss = parts["loss"] if cfg.grad_accum == 1 else parts["loss"] / cfg.grad_accum
                if self._plain:
                    loss.backward()
                else:
                    acc.backward(loss)
            for key, value in parts.items():
                value = value.detach()
                sums[key] = sums[key] + value if key in sums else value
        keys = list(sums)
        scalars = [sums[k].float().reshape(()) for k in keys]
        if cfg.clip_grad_norm is not None:
            if self._plain:
                norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.clip_grad_norm)
            else:
                norm = acc.clip_grad_norm_(self.params, cfg.clip_grad_norm)
            if norm is not None:
                keys.append("grad_norm")
                scalars.append(torch.as_tensor(norm, device=scalars[0].device).float().reshape(()))
        stacked = torch.stack(scalars)
        if self.distributed:  # losses averaged over processes (the norm is the same on each)
            stacked = acc.reduce(stacked, reduction="mean")
        host = stacked.tolist()  # the one sync of the step
        values = {k: v for k, v in zip(keys, host)}
        if cfg.grad_accum > 1:
            for k in keys[: len(sums)]:
                values[k] /= cfg.grad_accum
        if not math.isfinite(values["loss"]):
            self._optim.zero_grad(set_to_none=True)
            self._diverged({k: v for k, v in values.items() if k != "grad_norm"})
        values["lr"] = self.scheduler.get_last_lr()[0]
        self._optim.step()
        self.scheduler.step()
        self._optim.zero_grad(set_to_none=True)
        self.step_idx += 1
        self.steps_this_session += 1
        self.step_time_s += time.perf_counter() - t0
        self._last_train = values
        return values

    def after_step(self, values: dict[str, float], bar: Any) -> None:
        """Curve row and progress bar after :meth:`step`, every ``log_every`` steps (and the first
        and last): between log steps nothing is written and the bar is not touched."""
        cfg = self.cfg
        step = self.step_idx
        if step % cfg.log_every == 0 or step == cfg.max_steps or step == 1:
            row = {"step": step, "epoch": step * cfg.grad_accum / self.n_batches}
            row.update({("train_" + k if "loss" in k else k): v for k, v in values.items()})
            self._row(row)
            if self._step_hook is not None and self.accelerator.is_main_process:
                observed = {k: v for k, v in row.items() if k != "step"}
                self._step_hook(run_id=self.run_id, step=step, values=observed)
            postfix = {"loss": f"{values['loss']:.4f}"}
            if self.checkpoints and self.checkpoints[-1].val_loss is not None:
                postfix["val"] = f"{self.checkpoints[-1].val_loss:.4f}"
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(postfix, refresh=False)
            self._sync_bar(bar)

    def _sync_bar(self, bar: Any) -> None:
        ahead = self.step_idx - self._bar_n
        if ahead > 0:
            bar.update(ahead)
            self._bar_n = self.step_idx

    def _diverged(self, values: dict[str, float]) -> None:
        good = [c for c in self.checkpoints if (Path(c.path) / ckpt.WEIGHTS_FILE).is_file()]
        parts = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        where = (
            f"the last good checkpoint is step {good[-1].step} at {good[-1].path}"
            if good
            else "no checkpoint was written before it"
        )
        self._write_checkpoint_index()
        raise TrainingDivergedError(
            f"training loss is not finite at step {self.step_idx + 1} ({parts}); the weights were "
            f"not updated and {where}. Lower lr (now {self.cfg.lr:g}), keep clip_grad_norm, or "
            "check the training data for broken items."
        )

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean losses over the validation examples (every batch weighted by its size)."""
        self.module.eval()
        totals: dict[str, float] = {}
        count = 0
        bs = self.cfg.batch_size
        for b, start in enumerate(range(0, len(self.val_examples), bs)):
            if self.cfg.max_val_batches is not None and b >= self.cfg.max_val_batches:
                break
            chunk = self.val_examples[start : start + bs]
            with self.accelerator.autocast():
                parts = self.backbone.loss(self.backbone.collate(chunk))
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + float(value) * len(chunk)
            count += len(chunk)
        self.module.train()
        return {k: v / max(count, 1) for k, v in totals.items()}

    # ------------------------------------------------------------------ curves

    def _row(self, row: dict[str, Any]) -> None:
        self.curves.append(row)
        if self.accelerator.is_main_process:
            checked = CurveRow.from_dict(row, source=self.curves_path).to_dict()
            with open(self.curves_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(checked, sort_keys=True) + "\n")
            if self._tracking:  # the numbers of the row, at its step
                numbers = {
                    k: v
                    for k, v in row.items()
                    if k != "step" and isinstance(v, int | float) and not isinstance(v, bool)
                }
                self.accelerator.log(numbers, step=row["step"])

    def _start_trackers(self, resumed: bool) -> None:
        """Start the chosen trackers on the main process, with the training params as config."""
        if not self.trackers or not self.accelerator.is_main_process:
            return
        tb_dir = Path(self.ctx.run_dir) / TENSORBOARD_DIR
        if not resumed and tb_dir.exists():  # a fresh start: no curves of an earlier attempt
            shutil.rmtree(tb_dir)
        config = {
            k: v
            for k, v in self.cfg.model_dump().items()
            if isinstance(v, bool | int | float | str)
        }
        config.update(run_id=self.run_id, backbone=self.backbone.name, seed=self.ctx.seed)
        self.accelerator.init_trackers(
            self.ctx.tracker_project,
            config=config,
            init_kwargs={
                "wandb": {"name": self.run_id, "dir": str(self.ctx.run_dir)},
                "mlflow": {"run_name": self.run_id},
            },
        )
        self._tracking = True

    def _finish_trackers(self) -> None:
        # not accelerator.end_training(): that also ends the process group, which the runner
        # still needs after training on several processes
        if self._tracking:
            for tracker in self.accelerator.trackers:
                tracker.finish()
            self.accelerator.trackers = []
            self._tracking = False

    def _plot_curves(self) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:  # pragma: no cover - matplotlib is a dependency
            return
        train = [r for r in self.curves if "train_loss" in r]
        val = [r for r in self.curves if "val_loss" in r]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["step"] for r in train], [r["train_loss"] for r in train], label="train")
        if val:
            ax.plot(
                [r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation"
            )
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss")
        ax.legend()
        fig.tight_layout()
        fig.savefig(Path(self.ctx.run_dir) / "curves.png", dpi=100)
        plt.close(fig)

    # ------------------------------------------------------------------ checkpoints

    def _training_state(self) -> dict[str, Any]:
        return {
            "step": self.step_idx,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
        }

    def _save(self, val_loss: float | None, dev_score: float | None) -> None:
        path = self.ctx.checkpoint_dir
        if self.accelerator.is_main_process:
            path = ckpt.save_checkpoint(
                self.ctx.checkpoint_dir,
                self.step_idx,
                self.module,
                self._training_state(),
                {
                    "val_loss": val_loss,
                    "dev_score": dev_score,
                    "dev_metric": self.ctx.dev_metric,
                    "train_loss": self._last_train.get("loss"),
                },
            )
        else:
            path = ckpt.step_dir(self.checkpoint_dir, self.step_idx)
        self.accelerator.wait_for_everyone()
        self.checkpoints.append(CheckpointInfo(self.step_idx, str(path), val_loss, dev_score))
        self._write_checkpoint_index()

    def _write_checkpoint_index(self, selected: dict[str, Any] | None = None) -> None:
        if not self.accelerator.is_main_process:
            return
        index = Path(self.ctx.run_dir) / "checkpoints.json"
        CheckpointIndex.from_dict(
            {
                "checkpoints": [c.__dict__ for c in self.checkpoints],
                "selected": selected or {},
                "dev_metric": self.ctx.dev_metric,
            },
            source=index,
        ).to_disk(index)

    def _resume(self) -> int | None:
        last = ckpt.last_resumable(self.checkpoint_dir)
        if last is None:
            return None
        state = ckpt.load_checkpoint(last.path, self.module, with_state=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.step_idx = int(state["step"])
        for c in ckpt.list_checkpoints(self.checkpoint_dir):
            if c.step <= self.step_idx:
                self.checkpoints.append(
                    CheckpointInfo(
                        c.step, str(c.path), c.meta.get("val_loss"), c.meta.get("dev_score")
                    )
                )
        curves_path = self.checkpoint_dir.parent / self.curves_path.name  # the main's curves
        if curves_path.is_file():
            rows = [r for r in read_jsonl(curves_path) if r.get("step", 0) <= self.step_idx]
            self.accelerator.wait_for_everyone()  # every process read them before they change
            if self.accelerator.is_main_process:
                path = self.curves_path
                write_rows(path, [CurveRow.from_dict(r, source=path) for r in rows])
            self.curves = rows
        self.log.info("resumed from checkpoint %s (step %d)", last.path, self.step_idx)
        return self.step_idx

    def _dev_score(self) -> float | None:
        if self.ctx.dev_score is None:
            return None
        score = None
        if self.accelerator.is_main_process:  # the others get the main process's score
            self.module.eval()
            try:
                score = self.ctx.dev_score(self.backbone)
            except Exception as exc:  # noqa: BLE001 - a failed dev evaluation must not sink the run
                self.log.warning("dev-set scoring failed at step %d: %s", self.step_idx, exc)
                score = None
            finally:
                self.module.train()
        if self.distributed:
            from accelerate.utils import broadcast_object_list

            box = [score]
            broadcast_object_list(box, from_process=0)
            score = box[0]
        return None if score is None or not math.isfinite(score) else float(score)

    # ------------------------------------------------------------------ selection

    def select(self) -> dict[str, int | None]:
        """Steps chosen by validation loss (lowest) and by dev score (highest), plus the one used."""
        with_val = [c for c in self.checkpoints if c.val_loss is not None]
        with_dev = [c for c in self.checkpoints if c.dev_score is not None]
        by_val = min(with_val, key=lambda c: (c.val_loss, c.step)).step if with_val else None
        by_dev = max(with_dev, key=lambda c: (c.dev_score, -c.step)).step if with_dev else None
        last = self.checkpoints[-1].step if self.checkpoints else None
        used: int | None
        if self.cfg.select == "dev_metric" and by_dev is not None:
            used = by_dev
        else:
            if self.cfg.select == "dev_metric":
                self.log.warning("no checkpoint has a dev score; selecting by validation loss")
            used = by_val if by_val is not None else last
        return {"by_val_loss": by_val, "by_dev_metric": by_dev, "used": used}

    # ------------------------------------------------------------------ the run

    def fit(self) -> TrainOutcome:
        """Train to ``max_steps`` (resuming when possible) and load the selected checkpoint."""
        cfg = self.cfg
        Path(self.ctx.run_dir).mkdir(parents=True, exist_ok=True)
        resumed_from = self._resume() if cfg.resume else None
        if resumed_from is None and self.curves_path.exists() and self.accelerator.is_main_process:
            self.curves_path.unlink()
        if self.accelerator.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t_start = time.perf_counter()
        bar = self.ctx.progress(total=cfg.max_steps, desc=f"train {self.backbone.name}")
        self._bar_n = 0
        self._sync_bar(bar)
        try:
            self._start_trackers(resumed_from is not None)
            while self.step_idx < cfg.max_steps:
                values = self.step()
                self.after_step(values, bar)
                step, last = self.step_idx, self.step_idx == cfg.max_steps
                do_save = step % cfg.save_every == 0 or last
                val_loss = None
                if self.val_examples and (step % cfg.val_every == 0 or do_save):
                    val = self.validate()
                    val_loss = val["loss"]
                    self._row(
                        {
                            "step": step,
                            **{"val_" + k.removeprefix("val_"): v for k, v in val.items()},
                        }
                    )
                if do_save:
                    dev = self._dev_score()
                    if dev is not None:
                        self._row(
                            {"step": step, "dev_score": dev, "dev_metric": self.ctx.dev_metric}
                        )
                    self._save(val_loss, dev)
        finally:
            self._finish_trackers()
            self._sync_bar(bar)
            if hasattr(bar, "close"):
                bar.close()
        train_s = time.perf_counter() - t_start
        selected = self.select()
        if selected["used"] is not None and selected["used"] != self.step_idx:
            chosen = ckpt.step_dir(self.checkpoint_dir, selected["used"])
            ckpt.load_checkpoint(chosen, self.module, with_state=False)
            self.log.info("loaded checkpoint step %d (select=%s)", selected["used"], cfg.select)
        self._write_checkpoint_index(selected)
        if self.accelerator.is_main_process:
            self._plot_curves()
        return TrainOutcome(
            checkpoints=list(self.checkpoints),
            selected=selected,
            curves=list(self.curves),
            stats={
                "train_s": round(train_s, 3),
                "steps": self.steps_this_session,
                "steps_per_s": (
                    self.steps_this_session / self.step_time_s if self.step_time_s else None
                ),
                "peak_memory_mb": peak_memory_mb(self.accelerator.device),
                "resumed_from_step": resumed_from,
                "mixed_precision": self.accelerator.mixed_precision,
            },
        )


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch, or the process's peak resident memory on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
