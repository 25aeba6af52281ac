"""What a metric's numbers come from: versions of the packages that ship its models and code, and
sha256 of its weight files.

:func:`file_sha256` hashes a file once and remembers the digest in
``$TTSADAPT_CACHE/file-sha256.json`` (default ``~/.cache/ttsadapt``) under its resolved path, size
and modification time, so later processes only ``stat`` the file. A file that changes in place gets
a new size or mtime and is hashed again.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from ._common import cache_root

HASH_CACHE_FILE = "file-sha256.json"
_lock = threading.Lock()


def package_versions(*distributions: str) -> dict[str, str]:
    """``{distribution: version}`` of the installed ones among ``distributions``."""
    out = {}
    for dist in distributions:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def _hash_cache_path() -> Path:
    return cache_root() / HASH_CACHE_FILE


def _read_hash_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_hash_cache(path: Path, data: dict[str, Any]) -> None:
    # Write a sibling temporary file, then rename: a reader never sees half a file. A concurrent
    # writer may win the race and drop this process's new entry; it is recomputed next time.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs re-hashing


def file_sha256(path: Path | str) -> str:
    """sha256 of the file at ``path``, cached by resolved path + size + mtime."""
    p = Path(path).resolve()
    st = p.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    cache_path = _hash_cache_path()
    with _lock:
        entry = _read_hash_cache(cache_path).get(str(p))
        if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()):
            return str(entry["sha256"])
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(functools.partial(fh.read, 8 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    with _lock:
        data = _read_hash_cache(cache_path)
        data[str(p)] = {**stamp, "sha256": digest}
        _write_hash_cache(cache_path, data)
    return digest


def files_sha256(root: Path | str, names: Iterable[str], label: str = "") -> dict[str, str]:
    """``{label/name: sha256}`` of the files ``names`` under ``root`` that exist."""
    root = Path(root)
    prefix = f"{label}/" if label else ""
    return {f"{prefix}{n}": file_sha256(root / n) for n in names if (root / n).is_file()}


def folder_sha256(root: Path | str, label: str = "") -> dict[str, str]:
    """sha256 of every regular file in the folder ``root`` (recursively, hidden files skipped)."""
    root = Path(root)
    names = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    return files_sha256(root, names, label)


def package_file(package: str, relative: str) -> Path:
    """Path of a data file shipped inside an installed package, found without importing a
    top-level package (importing resemblyzer would load torch)."""
    if package in sys.modules or "." in package:
        return Path(str(resources.files(package) / relative))
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"no installed package {package!r}")
    return Path(list(spec.submodule_search_locations)[0]) / relative


def provenance(packages: dict[str, str], files: dict[str, str], **more: Any) -> dict[str, Any]:
    """The shape :meth:`ttsadapt.components.Metric.model_provenance` returns."""
    return {
        "packages": dict(sorted(packages.items())),
        "files": dict(sorted(files.items())),
        **more,
    }


def cached(owner: Any, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()`` once per ``owner`` (a metric instance; its params are frozen)."""
    found = owner.__dict__.get("_model_provenance")
    if found is None:
        found = owner.__dict__["_model_provenance"] = compute()
    return found


def forget(owner: Any) -> None:
    """Drop what :func:`cached` remembers for ``owner`` (after ``setup`` fetched a model)."""
    owner.__dict__.pop("_model_provenance", None)
