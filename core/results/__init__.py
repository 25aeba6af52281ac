"""The files a run writes, as typed models: one schema, read and written in one place.

* :class:`RunSummary`: ``runs/<run_id>/run.json`` (status, error, what was measured);
* :class:`MetricRecord`: ``runs/<run_id>/records/<metric>.json`` (one run x metric: identity,
  outputs with intervals, the headline output, counts, sizes, anchor flag);
* :class:`ScoreRow`: a line of ``runs/<run_id>/scores/<metric>.jsonl`` (one item's values, its
  error, whether the metric was not applicable);
* :class:`ManifestScoreRow`: a line of ``ttsadapt score``'s output (one manifest item, every
  metric's values and errors);
* :class:`SynthesisRow`: a line of ``runs/<run_id>/synthesis.jsonl`` (one utterance's timings,
  error); :class:`CurveRow`: a line of ``curves.jsonl`` (one logged training step);
  :class:`CheckpointIndex`: ``checkpoints.json`` (checkpoints kept, which was used).

Each carries ``schema_version`` (written as ``schema``) and has ``from_disk``/``to_disk``
(``from_dict``/``to_dict`` for objects parsed or written elsewhere; :func:`read_rows` and
:func:`write_rows` for JSON Lines files). Folders written before these
models existed (version 1) load unchanged; the conventions of older files (a headline output
found by guessing, "not applicable" as an error prefix) are resolved into fields on reading.
See :mod:`ttsadapt.records` for the folder layout.
"""

from .base import SCHEMA_VERSION, DiskModel, ResultsError, read_rows, write_rows
from .record import MetricRecord, OutputSummary
from .run import RunSummary
from .run_files import CheckpointEntry, CheckpointIndex, CurveRow, SynthesisRow
from .scores import (
    NOT_APPLICABLE_PREFIX,
    ManifestScoreRow,
    ScoreRow,
    is_not_applicable,
    read_score_rows,
    write_score_rows,
)

__all__ = [
    "NOT_APPLICABLE_PREFIX",
    "SCHEMA_VERSION",
    "CheckpointEntry",
    "CheckpointIndex",
    "CurveRow",
    "DiskModel",
    "ManifestScoreRow",
    "MetricRecord",
    "OutputSummary",
    "ResultsError",
    "RunSummary",
    "ScoreRow",
    "SynthesisRow",
    "is_not_applicable",
    "read_rows",
    "read_score_rows",
    "write_rows",
    "write_score_rows",
]
