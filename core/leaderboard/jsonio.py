"""Reading the JSON a results folder holds: orjson when installed, the standard library else.

Stage *load* of the leaderboard pipeline uses these for records, checkpoint indexes and per-item
score files (JSON Lines, read as one array when every line is whole).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..records import read_jsonl

__all__ = ["parse_json", "read_json", "read_score_rows"]

try:  # a declared dependency; the standard library gives the same results, only slower
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None  # type: ignore[assignment]  # the module, or None when missing


def parse_json(data: bytes) -> Any:
    """Parse JSON bytes: orjson when installed (several times faster), else the standard library.

    orjson refuses what Python's ``json`` writes for non-finite floats (``NaN``, ``Infinity``) and
    integers beyond 64 bits, so any orjson failure is retried with ``json``; errors therefore come
    from ``json`` (a :class:`json.JSONDecodeError` or :class:`UnicodeDecodeError`) either way.
    """
    if _orjson is not None:
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError:
            pass
    return json.loads(data)


def read_json(path: Path | str) -> Any:
    """The JSON document in the file ``path``."""
    with open(path, "rb") as fh:
        return parse_json(fh.read())


def read_score_rows(path: Path | str) -> list[dict[str, Any]]:
    """The rows of a JSON Lines file (a torn last line ignored), parsed as one array where it can."""
    with open(path, "rb") as fh:
        data = fh.read()
    body = data.strip()
    if _orjson is not None:
        try:  # fast path: the whole file as one JSON array, one parse
            return _orjson.loads(b"[" + body.replace(b"\n", b",") + b"]")
        except _orjson.JSONDecodeError:
            pass
    lines = [ln for ln in data.decode("utf-8").split("\n") if ln.strip()]
    try:
        return json.loads("[" + ",".join(lines) + "]")
    except json.JSONDecodeError:
        return read_jsonl(Path(path))  # tolerates a torn last line, names nothing else
