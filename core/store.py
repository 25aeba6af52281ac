"""The record store: one folder per run, atomic writes, a DONE marker last, per-run locks.

See :mod:`ttsadapt.records` for the file layout. A run folder without ``DONE`` was left by a
killed process: it is cleared (training checkpoints kept, so training resumes) and redone. Two
processes on one results folder never write the same run: each run is claimed with an exclusive,
non-blocking ``flock`` on ``runs/<run_id>.lock``; the loser skips that run. The lock dies with
its process, so a killed worker never leaves a run locked; on a shared filesystem (NFS v4, Lustre,
CephFS) ``flock`` is honoured across nodes, which is what lets Ray workers on several machines
share one results folder.

Under a multi-process launch of one run (``torchrun`` / ``accelerate launch``: ``WORLD_SIZE`` > 1)
only rank 0 writes the store. The store of every other rank reads the real results folder (so it
plans the same runs) but takes no locks and writes what the runner would write into a scratch
folder under the system temp dir; the training loop reads checkpoints from rank 0's run folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import TTSAdaptError
from .records import DONE_MARKER, SCHEMA_VERSION, atomic_write_json, atomic_write_text

KEEP_ON_RESUME = ("checkpoints",)
TRAINED_MARKER = "TRAINED"  # last file of a shared training folder: {"train_id", "adapt", ...}


class RunLockedError(TTSAdaptError):
    """Another process holds this run."""


def follower_rank() -> int:
    """This process's rank when it is not rank 0 of a multi-process launch, else 0."""
    try:
        world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0
    return rank if world > 1 and rank > 0 else 0


class RunStore:
    def __init__(self, results: Path | str, suite: str) -> None:
        self.results = Path(results)
        self.suite = suite
        self.suite_dir = self.results / suite
        self.runs_dir = self.suite_dir / "runs"
        # shared training of runs that differ only in their [synthesis] setting, by train_id
        self.trained_root = self.suite_dir / "trained"
        self.rank = follower_rank()
        # where a non-zero rank writes what the runner would write (never read back)
        self.scratch = (
            Path(tempfile.gettempdir()) / f"ttsadapt-rank{self.rank}-{os.getpid()}" / suite / "runs"
            if self.rank
            else None
        )

    # ------------------------------------------------------------------ setup

    def ensure_writable(self) -> None:
        """Create the folders and prove we can write there; a clear error otherwise."""
        if self.scratch is not None:
            self.scratch.mkdir(parents=True, exist_ok=True)
            if not self.runs_dir.is_dir():
                raise TTSAdaptError(
                    f"rank {self.rank}: results folder {self.runs_dir} does not exist; every "
                    "process of a multi-process launch must see rank 0's results folder"
                )
            return
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            probe = self.runs_dir / f".write-probe-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise TTSAdaptError(
                f"results folder {self.results} is not writable ({exc.strerror or exc}); "
                f"choose another with --results DIR"
            ) from exc

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    # ------------------------------------------------------------------ status

    def status(self, run_id: str) -> str:
        """``ok`` / ``failed`` (DONE written), ``partial`` (folder without DONE) or ``missing``."""
        run_dir = self.run_dir(run_id)
        try:
            return json.loads((run_dir / DONE_MARKER).read_text())["status"]
        except FileNotFoundError:
            return "partial" if run_dir.exists() else "missing"
        except (ValueError, KeyError):
            return "partial"

    def scan(self) -> dict[str, str]:
        """Status of every run folder in the suite (one small read per finished run)."""
        out: dict[str, str] = {}
        if not self.runs_dir.is_dir():
            return out
        with os.scandir(self.runs_dir) as it:
            for entry in it:
                if entry.is_dir() and not entry.name.startswith("."):
                    out[entry.name] = self.status(entry.name)
        return out

    def recorded_metrics(self, run_id: str) -> dict[str, str]:
        """metric name -> version of the records a finished run holds."""
        rec_dir = self.run_dir(run_id) / "records"
        out = {}
        if rec_dir.is_dir():
            for p in rec_dir.glob("*.json"):
                try:
                    out[p.stem] = json.loads(p.read_text())["metric_version"]
                except (ValueError, KeyError, OSError):
                    continue
        return out

    # ------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def claim(self, run_id: str) -> Iterator[Path]:
        """Hold the run's lock for the duration; raises :class:`RunLockedError` if taken.
        The lock file names the holder (``pid@host``). A follower rank takes no lock."""
        if self.scratch is not None:
            yield self._scratch_dir(run_id)
            return
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.runs_dir / f"{run_id}.lock"
        with open(lock_path, "a+") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLockedError(f"run {run_id} is being run by another process") from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}@{socket.gethostname()}")
            fh.flush()
            yield self.run_dir(run_id)

    def reset(self, run_id: str, keep: Iterable[str] = KEEP_ON_RESUME) -> Path:
        """Empty a run folder before (re)running it, keeping ``keep`` (training checkpoints)."""
        run_dir = self.run_dir(run_id) if self.scratch is None else self._scratch_dir(run_id)
        return self._clear(run_dir, keep)

    @staticmethod
    def _clear(run_dir: Path, keep: Iterable[str]) -> Path:
        if run_dir.exists():
            keep = set(keep)
            # the DONE marker goes first so a kill during the reset leaves a "partial" run
            with contextlib.suppress(FileNotFoundError):
                (run_dir / DONE_MARKER).unlink()
            for child in run_dir.iterdir():
                if child.name in keep:
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir

    def remove(self, run_id: str) -> None:
        if self.scratch is None:
            shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    # ------------------------------------------------------------------ shared training

    def trained_dir(self, train_id: str) -> Path:
        """``trained/<train_id>/``: the adapter (and checkpoints, curves) that every run of one
        training identity evaluates, whatever its synthesis setting (a follower rank: scratch)."""
        if self.scratch is not None:
            return self.scratch.parent / "trained" / train_id
        return self.trained_root / train_id

    @contextlib.contextmanager
    def claim_trained(self, train_id: str) -> Iterator[Path]:
        """Hold ``trained/<train_id>.lock`` (waiting for it: a second run of the same training
        waits for the first to finish training, then reuses its adapter)."""
        path = self.trained_dir(train_id)
        path.mkdir(parents=True, exist_ok=True)
        if self.scratch is not None:
            yield path
            return
        with open(self.trained_root / f"{train_id}.lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            yield path

    def trained_info(self, train_id: str) -> dict[str, Any] | None:
        """What the finished shared training wrote in its marker, or None when it is not done."""
        try:
            return json.loads((self.trained_dir(train_id) / TRAINED_MARKER).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def reset_trained(self, train_id: str, keep: Iterable[str] = KEEP_ON_RESUME) -> Path:
        """Empty an unfinished shared training folder, keeping its checkpoints (resume)."""
        return self._clear(self.trained_dir(train_id), keep)

    @staticmethod
    def mark_trained(trained_dir: Path, info: dict[str, Any]) -> None:
        atomic_write_json(trained_dir / TRAINED_MARKER, info)

    def remove_trained(self, train_id: str) -> None:
        if self.scratch is None:
            shutil.rmtree(self.trained_dir(train_id), ignore_errors=True)

    def _scratch_dir(self, run_id: str) -> Path:
        assert self.scratch is not None
        path = self.scratch / run_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def record_lost(
        self, run_id: str, config: dict[str, Any], error: str, attempts: int | None = None
    ) -> str:
        """Record a run whose worker died on every attempt as failed, keeping what the workers
        wrote (``run.log`` shows how far they got). Returns the run's status afterwards: a run
        that wrote its ``DONE`` before its worker died keeps it. Raises :class:`RunLockedError`
        when another process holds the run."""
        with self.claim(run_id) as run_dir:
            status = self.status(run_id)
            if status in ("ok", "failed"):
                return status
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / "error.txt", error + "\n")
            summary = {
                "schema": SCHEMA_VERSION,
                **config,
                "status": "failed",
                "error": error,
                "lost_worker": {"attempts": attempts, "recorded_by": socket.gethostname()},
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "metrics_recorded": [],
            }
            self.mark_done(run_dir, "failed", summary)
            return "failed"

    @staticmethod
    def mark_done(run_dir: Path, status: str, summary: dict[str, Any]) -> None:
        """Write ``run.json`` then the DONE marker — always the last file of a run."""
        atomic_write_json(run_dir / "run.json", summary)
        atomic_write_text(run_dir / DONE_MARKER, json.dumps({"status": status}) + "\n")

    @staticmethod
    def unmark_done(run_dir: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            (run_dir / DONE_MARKER).unlink()
