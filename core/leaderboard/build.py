"""The leaderboard pipeline end to end: load -> systems -> pairing/statistics -> summary ->
renderers, then the ``ttsadapt_leaderboard_written`` hook."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pluggy

from ..errors import ConfigError, TTSAdaptError
from ..records import atomic_folder, atomic_write_bytes, atomic_write_text
from ..stats import DEFAULT_RESAMPLES
from .listening import listening_view
from .load import check_metric_versions, list_suites, load_results
from .media import AUDIO_FOLDER, AUDIO_MODES, AudioSink, read_eval_manifest
from .renderers import Leaderboard, renderer_classes
from .summary import summarise
from .tables import legend_lines, report_tables

__all__ = ["build_leaderboard"]


def build_leaderboard(
    results_dir: Path,
    suite: str,
    select: str = "val_loss",
    headlines: dict[str, str] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    audio: str = "folder",
    manifest: Path | str | None = None,
    plugins: pluggy.PluginManager | None = None,
) -> dict[str, Path]:
    """Write ``results_dir/suite/leaderboard.{md,csv,html}`` (and plugins' formats) from the records.

    The page lets one listen: ``audio="folder"`` writes every system's audio (compressed, Ogg/
    Vorbis) to ``leaderboard_audio/`` beside the page (replaced whole on each build), ``"embed"``
    puts it into the page as data URIs, ``"none"`` leaves players out. ``manifest`` (the suite's
    corpus manifest, see :func:`read_eval_manifest`) adds each sentence's text, the speaker's
    prompt and the real recording.

    ``select`` names the checkpoint-selection rule whose validation loss is shown and marked in the
    plots (``val_loss`` or ``dev_score``). ``headlines`` maps metric -> the output to show as its
    headline (e.g. ``Metric.headline().name`` from a registry), overriding the records'; without
    it each record's ``headline`` is used (resolved for older records by
    :class:`~ttsadapt.results.MetricRecord`: the flagged output, the one named like the metric, or
    the first).
    ``plugins`` is the plugin manager whose renderers write the files (the built-in Markdown, CSV
    and HTML, and any format a plugin registers with ``ttsadapt_register_leaderboard_renderers``)
    and whose ``ttsadapt_leaderboard_written`` hook is called once the files are written; None:
    one with the built-in and installed plugins, as ``ttsadapt`` builds it without ``-p``.
    Returns the written paths by format (``md``, ``csv``, ``html``, a plugin's formats) and
    ``audio`` when an audio folder was written.

    Raises :class:`TTSAdaptError` on mixed metric versions or when no run has finished.
    """
    if audio not in AUDIO_MODES:
        raise ConfigError(f"audio: expected one of {', '.join(AUDIO_MODES)}, got {audio!r}")
    if plugins is None:
        from ..plugin_manager import create_plugin_manager

        plugins, _ = create_plugin_manager()
    renderers = [cls() for cls in renderer_classes(plugins)]
    suite_dir = Path(results_dir) / suite
    if not suite_dir.is_dir():
        known = ", ".join(list_suites(Path(results_dir))) or "none"
        raise TTSAdaptError(f"{suite_dir}: no such suite folder (suites found: {known})")
    loaded = load_results(suite_dir, headlines=headlines)
    if not len(loaded.records):
        raise TTSAdaptError(
            f"{suite_dir}: no finished runs with records (runs/<id>/DONE and records/*.json); "
            f"{len(loaded.failed_runs)} failed, {len(loaded.unfinished_runs)} unfinished. "
            f"Run the suite first: ttsadapt run SUITE.toml"
        )
    check_metric_versions(loaded)
    summary = summarise(loaded, select=select, n_resamples=n_resamples)
    items = read_eval_manifest(manifest) if manifest else None
    board = Leaderboard(loaded, summary, report_tables(loaded, summary), legend_lines(summary))
    paths: dict[str, Path] = {}
    audio_dir: Path | None = None
    for renderer in renderers:
        if renderer.needs_listening_view and board.listening is None:
            board.listening, audio_dir = _listening(board, suite_dir, audio, items)
        path = suite_dir / f"leaderboard{renderer.suffix}"
        _write(path, renderer.render(board))
        paths[renderer.format] = path
    if audio_dir is not None:
        paths["audio"] = audio_dir
    plugins.hook.ttsadapt_leaderboard_written(suite=suite, paths=dict(paths))
    return paths


def _listening(
    board: Leaderboard, suite_dir: Path, audio: str, items: dict[str, Any] | None
) -> tuple[dict[str, Any], Path | None]:
    """The listening view with its audio where ``audio`` says; the audio folder if one was written.

    ``folder`` replaces ``leaderboard_audio/`` whole (removed when no run has audio), ``embed``
    removes a folder an earlier build left, ``none`` leaves it alone.
    """
    loaded, summary = board.loaded, board.summary
    audio_dir = suite_dir / AUDIO_FOLDER
    if audio == "folder":
        with atomic_folder(audio_dir) as tmp:
            sink = AudioSink("folder", tmp)
            view = listening_view(loaded, summary, sink, items)
        if not sink.n_files:
            shutil.rmtree(audio_dir, ignore_errors=True)
            return view, None
        return view, audio_dir
    view = listening_view(loaded, summary, AudioSink(audio), items)
    if audio == "embed" and audio_dir.is_dir():  # a folder left by an earlier build
        shutil.rmtree(audio_dir, ignore_errors=True)
    return view, None


def _write(path: Path, content: str | bytes) -> None:
    if isinstance(content, bytes):
        atomic_write_bytes(path, content)
    else:
        atomic_write_text(path, content)
