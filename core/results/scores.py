"""Per-item score rows: ``runs/<run_id>/scores/<metric>.jsonl``, one JSON object per line.

A row holds the item's id, speaker and language, ``values`` (output -> number), ``error`` (why
the item has no values; ``null`` when it was scored), ``not_applicable`` (the metric cannot score
this item, e.g. PESQ without a real recording: not a failure) and, from some metrics, ``extra``
(e.g. an ASR metric's transcript). Rows of version 1 carry no ``not_applicable`` field: their
error's ``not applicable`` prefix says it, and :func:`is_not_applicable` reads both. They carry no
version either; a later version writes ``schema`` in each row.

:class:`ManifestScoreRow` is a line of ``ttsadapt score``'s output: one manifest item under every
metric scored (``values`` and ``errors`` keyed by metric).

The leaderboard reads score files with its own array reader (hundreds of thousands of rows); it
uses :func:`is_not_applicable` for the same rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from .base import DiskModel, read_rows, write_rows
from .record import OptionalText, Text

__all__ = [
    "NOT_APPLICABLE_PREFIX",
    "ManifestScoreRow",
    "ScoreRow",
    "is_not_applicable",
    "read_score_rows",
    "write_score_rows",
]

NOT_APPLICABLE_PREFIX = "not applicable"


def is_not_applicable(error: Any, flag: Any = None) -> bool:
    """Whether a row with ``error`` was not applicable: its ``not_applicable`` field when it has
    one (``flag``), else whether the error begins with ``not applicable`` (version 1 rows)."""
    if flag is not None:
        return bool(flag)
    return bool(error) and str(error).lower().startswith(NOT_APPLICABLE_PREFIX)


class ScoreRow(DiskModel):
    """One item's scores under one metric."""

    kind = "score row"
    version_key = False  # version 1 rows have none; a later version writes it

    item: Text
    speaker: OptionalText = None
    language: OptionalText = None
    values: dict[str, float | None] = Field(default_factory=dict)
    error: OptionalText = None
    not_applicable: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _not_applicable_from_error(self) -> ScoreRow:
        if "not_applicable" not in self.model_fields_set and self.error:
            # read from the error, not given: kept out of fields_set, so it is not written back
            object.__setattr__(self, "not_applicable", is_not_applicable(self.error))
        return self

    @property
    def ok(self) -> bool:
        return not self.error


class ManifestScoreRow(DiskModel):
    """One line of ``ttsadapt score --out``: a manifest item scored by several metrics.

    ``id``; ``audio``, ``speaker`` and ``language`` as the manifest gives them (kept as written);
    ``values`` {metric: {output: number}} for the metrics that scored it; ``errors`` {metric:
    reason} for those that did not (``not applicable: …`` when the metric cannot score it);
    ``extra`` {metric: {...}} (e.g. an ASR metric's transcript). Like :class:`ScoreRow`, version 1
    rows carry no version."""

    kind = "score output row"
    version_key = False

    id: Text
    audio: Any = None
    speaker: Any = ""
    language: Any = ""
    values: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)
    extra: dict[str, dict[str, Any]] = Field(default_factory=dict)


def read_score_rows(path: Path | str) -> list[ScoreRow]:
    """The rows of a score file (a torn last line, from a killed writer, is ignored); a
    :class:`ResultsError` names the file and line of a row that is not a score row."""
    return read_rows(ScoreRow, path)


def write_score_rows(path: Path | str, rows: Iterable[ScoreRow]) -> None:
    """Write ``rows`` as JSON Lines, atomically (sorted keys, as the runner writes them)."""
    write_rows(path, rows)
