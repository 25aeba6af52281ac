"""The record store: one folder per run, atomic writes, a DONE marker last, per-run locks.

See :mod:`ttsadapt.records` for the file layout. A run folder without ``DONE`` was left by a
killed process: it is cleared (training checkpoints kept, so training resumes) and redone. Two
processes on one results folder never write the same run: each run is claimed with an exclusive,
non-blocking ``flock`` on ``runs/<run_id>.lock``; the loser skips that run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import TTSAdaptError
from .records import DONE_MARKER, atomic_write_json, atomic_write_text

KEEP_ON_RESUME = ("checkpoints",)


class RunLockedError(TTSAdaptError):
    """Another process holds this run."""


class RunStore:
    def __init__(self, results: Path | str, suite: str) -> None:
        self.results = Path(results)
        self.suite = suite
        self.suite_dir = self.results / suite
        self.runs_dir = self.suite_dir / "runs"

    # ------------------------------------------------------------------ setup

    def ensure_writable(self) -> None:
        """Create the folders and prove we can write there; a clear error otherwise."""
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
        """Hold the run's lock for the duration; raises :class:`RunLockedError` if taken."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.runs_dir / f"{run_id}.lock"
        fh = open(lock_path, "a+")
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLockedError(f"run {run_id} is being run by another process") from None
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            yield self.run_dir(run_id)
        finally:
            fh.close()

    def reset(self, run_id: str, keep: Iterable[str] = KEEP_ON_RESUME) -> Path:
        """Empty a run folder before (re)running it, keeping ``keep`` (training checkpoints)."""
        run_dir = self.run_dir(run_id)
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
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    @staticmethod
    def mark_done(run_dir: Path, status: str, summary: dict[str, Any]) -> None:
        """Write ``run.json`` then the DONE marker — always the last file of a run."""
        atomic_write_json(run_dir / "run.json", summary)
        atomic_write_text(run_dir / DONE_MARKER, json.dumps({"status": status}) + "\n")

    @staticmethod
    def unmark_done(run_dir: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            (run_dir / DONE_MARKER).unlink()
