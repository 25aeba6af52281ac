"""The leaderboard: built from a suite's records only (see :mod:`ttsadapt.records` for the format).

``build_leaderboard(results_dir, suite)`` writes ``results_dir/suite/leaderboard.{md,csv,html}``:

* one row per *system* = backbone x method x method params x data recipe (seeds pooled);
* per metric output: the mean over all utterance x seed values with a 95 % BCa *cluster* bootstrap
  interval (utterances are resampled, each with all its seeds' values, so seeds of one utterance
  are not counted as independent evidence), the per-seed means and intervals from the records, the
  delta to the zero-shot anchor of the same backbone (mean of paired differences: system seed ``s``
  paired with anchor seed ``s`` on the same item; where the anchor has no seed ``s``, its per-item
  mean over its seeds, so a one-seed anchor serves every seed) with its cluster bootstrap interval,
  a two-sided Wilcoxon signed-rank test on the per-item means of those differences (one pair per
  utterance), its p-value raw and Holm-adjusted over every comparison of the leaderboard (all
  systems x metric outputs against their anchor: one family), stars from the adjusted p-value, and
  the rank among all systems;
* trainable-parameter share, adapter size, the selected checkpoint's validation loss;
* failed and unfinished runs, and items that were "not applicable" or failed.

The CSV is *tidy long*: one row per system x metric x output x scope, where scope is ``pooled``
(the leaderboard statistics) or ``seed`` (one row per seed, numbers from that run's record).

The pipeline runs one way, one module per stage:

* :mod:`.load` (with :mod:`.jsonio`, :mod:`.scores`): the results folder -> records table and
  per-item scores, failures listed;
* :mod:`.systems`: runs -> systems (label, seeds, sizes, selected checkpoint);
* :mod:`.pairing`, :mod:`.summary`: per-item pooling, pairing with the anchor, intervals, tests,
  ranks -> :class:`Summary`;
* :mod:`.tables`: the summary -> the report's tables and the tidy CSV frame;
* :mod:`.renderers` (Markdown, CSV, HTML via :mod:`.page`, :mod:`.figures`, :mod:`.listening`
  and :mod:`.media`):
  registered through the ``ttsadapt_register_leaderboard_renderers`` hook, so a plugin can add a
  format;
* :mod:`.build`: :func:`build_leaderboard` runs the stages, writes every renderer's file and calls
  ``ttsadapt_leaderboard_written``.
"""

from __future__ import annotations

from .build import build_leaderboard
from .listening import listening_view, transcript_diff
from .load import FailedRun, LoadedResults, check_metric_versions, list_suites, load_results
from .media import (
    AUDIO_FOLDER,
    AUDIO_MODES,
    AudioSink,
    ItemInfo,
    encode_audio,
    read_eval_manifest,
    safe_name,
)
from .renderers import Leaderboard, LeaderboardRenderer, renderer_classes
from .scores import NOT_APPLICABLE_PREFIX, UtteranceScores
from .summary import Summary, human_metrics, summarise
from .systems import SELECT_CHOICES
from .tables import (
    AGREEMENT_TITLE,
    CSV_COLUMNS,
    HUMAN_TITLE,
    csv_frame,
    headline_frame,
    human_frame,
    metric_title,
    rank_agreement,
    report_tables,
    seeds_text,
)

__all__ = [
    "AGREEMENT_TITLE",
    "AUDIO_FOLDER",
    "AUDIO_MODES",
    "CSV_COLUMNS",
    "HUMAN_TITLE",
    "NOT_APPLICABLE_PREFIX",
    "SELECT_CHOICES",
    "AudioSink",
    "FailedRun",
    "ItemInfo",
    "Leaderboard",
    "LeaderboardRenderer",
    "LoadedResults",
    "Summary",
    "UtteranceScores",
    "build_leaderboard",
    "check_metric_versions",
    "csv_frame",
    "encode_audio",
    "headline_frame",
    "human_frame",
    "human_metrics",
    "list_suites",
    "listening_view",
    "load_results",
    "metric_title",
    "rank_agreement",
    "read_eval_manifest",
    "renderer_classes",
    "report_tables",
    "safe_name",
    "seeds_text",
    "summarise",
    "transcript_diff",
]
