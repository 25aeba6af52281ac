"""Atomic writes give files the mode a plain open() would: readable by others under umask 022."""

from __future__ import annotations

import os
import stat

import pytest

from ttsadapt.records import atomic_folder, atomic_write_json, atomic_write_text


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_writes_respect_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_write_json(tmp_path / "sub" / "b.json", {"a": 1})
        with atomic_folder(tmp_path / "folder") as tmp:
            (tmp / "c.txt").write_text("y")
    finally:
        os.umask(old)
    for path, full in (
        (tmp_path / "a.txt", 0o666),
        (tmp_path / "sub" / "b.json", 0o666),
        (tmp_path / "folder", 0o777),
    ):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == full & ~mask, f"{path.name}: mode {oct(mode)}, expected {oct(full & ~mask)}"
