"""Hook specifications: the whole contract between the host and its plugins.

Registration hooks are called on every plugin and return lists of component *classes*; discovery
imports nothing heavy. Lifecycle hooks let loggers and trackers observe a suite without core changes.
"""

from __future__ import annotations

from typing import Any

from .markers import hookspec

# --------------------------------------------------------------------------- registration


@hookspec
def ttsadapt_register_backbones() -> list[type]:
    """Return the :class:`ttsadapt.components.Backbone` subclasses this plugin provides.

    Called once on every plugin at start-up. Each class needs a unique ``name``; a name registered
    by two plugins is an error naming both.
    """


@hookspec
def ttsadapt_register_methods() -> list[type]:
    """Return the :class:`ttsadapt.components.Method` subclasses this plugin provides."""


@hookspec
def ttsadapt_register_metrics() -> list[type]:
    """Return the :class:`ttsadapt.components.Metric` subclasses this plugin provides.

    Each metric class declares ``outputs`` (the first is its headline, with ``higher_is_better``
    and ``range``), ``needs_text``, ``needs_reference_audio``, ``needs_speaker_prompt`` and
    ``sample_rate``.
    """


@hookspec
def ttsadapt_register_filters() -> list[type]:
    """Return the :class:`ttsadapt.components.DataFilter` subclasses this plugin provides."""


@hookspec
def ttsadapt_register_leaderboard_renderers() -> list[type]:
    """Return the :class:`ttsadapt.leaderboard.LeaderboardRenderer` subclasses this plugin provides.

    Each class names its ``format`` (unique: a format registered twice is an error naming both
    plugins; the built-ins are ``md``, ``csv`` and ``html``) and its file ``suffix``;
    ``render(board)`` returns the text (or bytes) of ``<results>/<suite>/leaderboard<suffix>``
    from a :class:`ttsadapt.leaderboard.Leaderboard` (records, summary, tables, legend).
    """


# --------------------------------------------------------------------------- lifecycle


@hookspec(historic=True)
def ttsadapt_configure(config: dict[str, Any]) -> None:
    """Called once after plugins are loaded, with the invocation's settings.

    :param config: ``{"results": Path | None, "disabled": [...], "argv": [...]}``. Historic: a
        plugin registered later still receives the call.
    """


@hookspec
def ttsadapt_run_started(run: dict[str, Any]) -> None:
    """Called before a run starts.

    :param run: the resolved run config (``run_id``, ``suite``, ``backbone``, ``method``,
        ``params``, ``data``, ``seed``, ``metrics``) and ``run_dir``.
    """


@hookspec
def ttsadapt_run_finished(run: dict[str, Any], status: str, records: list[dict[str, Any]]) -> None:
    """Called after a run's records are written.

    :param run: as for :func:`ttsadapt_run_started`.
    :param status: ``"ok"`` or ``"failed"``.
    :param records: the metric records written for the run (empty when it failed). Each is a
        dict shaped as :class:`ttsadapt.results.MetricRecord` writes it
        (``MetricRecord.from_dict(r)`` reads it, typed).
    """


@hookspec
def ttsadapt_leaderboard_written(suite: str, paths: dict[str, Any]) -> None:
    """Called once after a leaderboard is written, by :func:`ttsadapt.leaderboard.build_leaderboard`
    (so for ``ttsadapt run``, ``ttsadapt leaderboard`` and Python callers alike).

    :param suite: the suite name.
    :param paths: the written files by format: ``{"md": Path, "csv": Path, "html": Path}``, plus
        each plugin renderer's format and ``"audio"`` when an audio folder was written.
    """


@hookspec
def ttsadapt_training_step(run_id: str, step: int, values: dict[str, float]) -> None:
    """Called by the shared training loop after each logged optimizer step.

    A step is logged every ``log_every`` steps (a training parameter), and at the first and the
    last; the call comes on the main process only (with several processes the values are already
    averaged over them). The loop asks for this hook only when some plugin implements it, so an
    unobserved run pays nothing.

    :param run_id: the run's id (its folder's name under ``runs/``).
    :param step: the optimizer step just taken (1-based).
    :param values: a fresh dict of what ``curves.jsonl`` records for the step: ``train_loss`` and
        the backbone's other ``train_*`` losses, ``lr``, ``grad_norm`` (when clipping) and
        ``epoch``. Read it; the loop does not look at it again. The fields of
        :class:`ttsadapt.results.CurveRow` less ``step``.
    """
