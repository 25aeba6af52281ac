"""The record store's on-disk format, and atomic file writes.

Layout of a results folder (``--results``, default ``results/``)::

    results/<suite>/
        suite.toml                  copy of the suite that produced the runs (last run)
        runs/<run_id>/
            config.json             resolved run config (defaults filled in, component versions in)
            run.log                 the run's own log
            curves.jsonl            one row per logged step: {"step", "train_loss", "val_loss", ...}
            checkpoints.json        [{"step", "path", "val_loss", "dev_score"}], "selected": {...}
            audio/<item_id>.wav     the synthesised evaluation set
            scores/<metric>.jsonl   per-utterance rows: {"item", "speaker", "language",
                                    "values": {output: float}, "error": str | null}
            records/<metric>.json   one record per run x metric (see RECORD_FIELDS)
            adapter/                adapter weights (ttsadapt format) and upstream export
            error.txt, traceback.txt  only for failed runs
            run.json                the run's summary: status, provenance, timings, sizes
            DONE                    written last; a run without it is unfinished and is redone
        leaderboard.{md,csv,html}

A record (``records/<metric>.json``) holds::

    schema, suite, suite_version, run_id, backbone, backbone_version, backbone_params,
    method, method_version, method_params, is_anchor, data_recipe (null for the anchor), seed,
    metric, metric_version, metric_params, headline (name of the headline output),
    outputs: {name: {"mean", "ci_low", "ci_high", "n", "higher_is_better", "range", "unit"}},
    n_items, n_errors, errors: {reason: count},
    trainable_params, total_params, adapter_bytes, status, provenance

Every write goes to a temporary file in the same folder and is renamed into place, so a killed
process leaves either the old file or the new one, never half of one. Files and folders get the
modes a plain ``open``/``mkdir`` would (``0o666``/``0o777`` less the umask), not the owner-only
0600/0700 of ``mkstemp``/``mkdtemp``, so a colleague or a web server can read the results.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
DONE_MARKER = "DONE"


def _umask() -> int:
    """The process umask: from ``/proc/self/status`` on Linux (no side effect, thread-safe), else
    read by setting it and restoring it at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file: ``0o666 & ~umask``.

    ``tempfile.mkstemp`` creates its file with mode 0600 whatever the umask, so a file written
    atomically would be readable by its owner only; the atomic writers set this mode instead.
    """
    return 0o666 & ~_umask()


def folder_mode() -> int:
    """The mode ``mkdir`` would give a new folder: ``0o777 & ~umask`` (mkdtemp makes 0700)."""
    return 0o777 & ~_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), file_mode())  # mkstemp made it 0600
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(
        path, "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in rows)
    )


@contextlib.contextmanager
def atomic_folder(folder: Path) -> Iterator[Path]:
    """Yield a fresh temporary sibling of ``folder`` to fill; when the block succeeds it takes
    ``folder``'s place (rename), when it raises it is removed and ``folder`` is left as it was."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        os.chmod(tmp, folder_mode())  # mkdtemp made it 0700
        yield tmp
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read JSON Lines, ignoring a torn last line (a writer killed mid-append)."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # the last non-empty line may be torn
                break
            raise
    return rows


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


# The fields that identify a run; every record and the run's config.json carry them.
RUN_CONFIG_KEYS = (
    "run_id",
    "suite",
    "suite_version",
    "backbone",
    "backbone_version",
    "backbone_params",
    "method",
    "method_version",
    "method_params",
    "is_anchor",
    "data_recipe",
    "seed",
)


def iter_jsonl_objects(path: Path, error: type[Exception]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line of the JSON Lines file ``path``; raises
    ``error`` naming the file and line of a line that is not a JSON object."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: manifest not found (expected a JSON Lines file)")
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise error(f"{path}:{n}: expected a JSON object")
        yield n, row
