"""What every file model of a results folder shares: a schema version, reading and writing.

A model is read with :meth:`DiskModel.from_disk` (a file) or :meth:`DiskModel.from_dict` (an
object already parsed, e.g. by a faster reader), and written with :meth:`DiskModel.to_disk` in the
layout the runner has always used (sorted keys, two-space indent, written atomically). Fields the
model does not name are kept and written back, so a file read and written again is unchanged.
Version 1 files carry their version under ``schema`` (records, run summaries) or not at all
(score rows); a file from a newer version than this code reads is refused with a
:class:`ResultsError` that says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from ..errors import TTSAdaptError
from ..records import atomic_write_json, atomic_write_jsonl, read_jsonl

try:  # a declared dependency; the standard library gives the same results, only slower
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None  # type: ignore[assignment]  # the module, or None when missing

__all__ = [
    "SCHEMA_VERSION",
    "DiskModel",
    "Number",
    "ResultsError",
    "describe_validation_error",
    "read_rows",
    "write_rows",
]

SCHEMA_VERSION = 1

#: a number kept as written: an integer stays an integer, a float a float (``float`` alone would
#: write ``3`` back as ``3.0``)
Number = int | float


class ResultsError(TTSAdaptError):
    """A file of a results folder cannot be read as what it should be; the message names the file
    and the field."""


def describe_validation_error(exc: ValidationError) -> str:
    """One line: the missing fields by name, then up to three other problems as ``field: why``."""
    missing = [".".join(map(str, e["loc"])) for e in exc.errors() if e["type"] == "missing"]
    other = [
        f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']} (got {e['input']!r})"
        for e in exc.errors()
        if e["type"] != "missing"
    ]
    parts = [f"missing field(s) {', '.join(missing)}"] if missing else []
    parts += other[:3] + ([f"and {len(other) - 3} more"] if len(other) > 3 else [])
    return "; ".join(parts)


class DiskModel(BaseModel):
    """Base of the results-folder models: ``schema_version`` plus reading and writing."""

    # fields the model does not name are kept; numbers where text is expected (a version written
    # as ``1``) are read as text
    model_config = ConfigDict(extra="allow", populate_by_name=True, coerce_numbers_to_str=True)

    #: what the file is, for messages ("metric record", "run summary", ...)
    kind: ClassVar[str] = "results file"
    #: whether the version is written (``schema``) even when the file read had none; rows of
    #: JSON Lines files (version 1 rows carry none) write it only from a later version on
    version_key: ClassVar[bool] = True

    schema_version: int = Field(
        default=SCHEMA_VERSION,
        validation_alias=AliasChoices("schema", "schema_version"),
        serialization_alias="schema",
    )

    @classmethod
    def from_dict(cls, data: Any, source: Path | str = "<object>") -> Self:
        """Validate a parsed object; a :class:`ResultsError` names ``source`` and the fields."""
        if not isinstance(data, dict):
            raise ResultsError(
                f"{source}: expected a JSON object ({cls.kind}), got {type(data).__name__}"
            )
        version = data.get("schema_version", data.get("schema", SCHEMA_VERSION))
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise ResultsError(
                f"{source}: {cls.kind} of schema {version}, newer than this ttsadapt reads (up to "
                f"{SCHEMA_VERSION}); upgrade ttsadapt to read it"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ResultsError(f"{source}: {describe_validation_error(exc)}") from None

    @classmethod
    def from_disk(cls, path: Path | str) -> Self:
        """Read and validate the JSON file ``path``."""
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            obj = _orjson.loads(data) if _orjson is not None else json.loads(data)
        except OSError as exc:
            raise ResultsError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except ValueError:  # orjson refuses NaN/Infinity, which Python's json writes
            try:
                obj = json.loads(data)
            except ValueError as exc:
                raise ResultsError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(obj, source=path)

    def to_dict(self) -> dict[str, Any]:
        """The object written to disk: the fields it was read with or given (defaults never set
        are left out, so a file read and written again is unchanged) under their on-disk names,
        and its schema version."""
        data = self.model_dump(by_alias=True, exclude_unset=True)
        if self.version_key or self.schema_version != SCHEMA_VERSION:
            data["schema"] = self.schema_version
        return data

    def to_disk(self, path: Path | str) -> None:
        """Write atomically as the runner writes (sorted keys, two-space indent)."""
        atomic_write_json(Path(path), self.to_dict())


M = TypeVar("M", bound=DiskModel)


def read_rows(model: type[M], path: Path | str) -> list[M]:
    """The rows of the JSON Lines file ``path`` as ``model`` (a torn last line, from a killed
    writer, is ignored); a :class:`ResultsError` names the file and line of a row that is not
    one."""
    try:
        raw = read_jsonl(Path(path))
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read {model.kind}s ({exc})") from None
    return [model.from_dict(row, source=f"{path}:{n}") for n, row in enumerate(raw, start=1)]


def write_rows(path: Path | str, rows: Iterable[DiskModel]) -> None:
    """Write ``rows`` as JSON Lines, atomically (sorted keys, as the runner writes them)."""
    atomic_write_jsonl(Path(path), (row.to_dict() for row in rows))
