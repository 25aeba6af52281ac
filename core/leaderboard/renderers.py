"""Stage *renderers*: the formats a leaderboard is written in, registered through a hook.

A renderer is a :class:`LeaderboardRenderer` subclass with a ``format`` (its key in the paths
:func:`~ttsadapt.leaderboard.build_leaderboard` returns and in ``ttsadapt_leaderboard_written``)
and a ``suffix`` (the file is ``<results>/<suite>/leaderboard<suffix>``); its :meth:`render`
returns the file's text from a :class:`Leaderboard`. The built-in Markdown, CSV and HTML renderers
are registered by this module's ``ttsadapt_register_leaderboard_renderers``; a plugin adds a
format by implementing the same hook.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd
import pluggy

from ..errors import PluginError
from ..markers import hookimpl
from .load import LoadedResults
from .page import render_html
from .summary import Summary
from .tables import AGREEMENT_TITLE, HUMAN_TITLE, csv_frame

__all__ = [
    "CsvRenderer",
    "HtmlRenderer",
    "Leaderboard",
    "LeaderboardRenderer",
    "MarkdownRenderer",
    "renderer_classes",
]

HOOK = "ttsadapt_register_leaderboard_renderers"


@dataclass
class Leaderboard:
    """Everything a renderer draws on, built once per leaderboard.

    ``tables`` are the report's tables by section title (:func:`~.tables.report_tables`),
    ``legend`` the lines that explain them; ``listening`` is the per-sentence listening view
    (:func:`~.listening.listening_view`), built only when some renderer asks for it.
    """

    loaded: LoadedResults
    summary: Summary
    tables: dict[str, pd.DataFrame]
    legend: list[str]
    listening: dict[str, Any] | None = None


class LeaderboardRenderer:
    """One leaderboard format. Set ``format`` and ``suffix``; implement :meth:`render`.

    ``needs_listening_view``: the renderer reads :attr:`Leaderboard.listening` (building it reads
    and encodes the runs' audio, so it is built only when a renderer needs it).
    """

    format: ClassVar[str] = ""
    suffix: ClassVar[str] = ""
    needs_listening_view: ClassVar[bool] = False

    def render(self, board: Leaderboard) -> str | bytes:
        """The file's content: text (written as UTF-8) or bytes."""
        raise NotImplementedError(f"{type(self).__name__}.render")


def _markdown_table(frame: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |"]
    lines.append("|" + "|".join("---" for _ in frame.columns) + "|")
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


class MarkdownRenderer(LeaderboardRenderer):
    """``leaderboard.md``: the headline table with its legend, per-seed numbers, failures."""

    format = "md"
    suffix = ".md"

    def render(self, board: Leaderboard) -> str:
        loaded, summary, tables = board.loaded, board.summary, board.tables
        parts = [
            f"# Leaderboard: {summary.suite}",
            "",
            f"{len(loaded.run_ids)} finished runs, {len(summary.systems)} systems, "
            f"{len(loaded.failed_runs)} failed and {len(loaded.unfinished_runs)} unfinished "
            "runs.",
            "",
            _markdown_table(tables["Leaderboard"]),
            "",
            *[f"- {line}" for line in board.legend],
            "",
            "## Per seed (headline outputs, from the records)",
            "",
            _markdown_table(tables["Per seed (headline outputs, from the records)"]),
            "",
            "## Items not scored",
            "",
            _markdown_table(tables["Items not scored"]),
            "",
        ]
        for title in (HUMAN_TITLE, AGREEMENT_TITLE):
            if title in tables:
                parts += [f"## {title}", "", _markdown_table(tables[title]), ""]
        fail = tables["Failed runs"]
        parts += ["## Failed runs", ""]
        parts += [_markdown_table(fail) if len(fail) else "None.", ""]
        if summary.notes:
            parts += ["## Notes", "", *[f"- {n}" for n in summary.notes], ""]
        parts += ["All outputs of every metric are in leaderboard.csv (tidy long format).", ""]
        return "\n".join(parts)


class CsvRenderer(LeaderboardRenderer):
    """``leaderboard.csv``: every output of every metric, tidy long (:func:`~.tables.csv_frame`)."""

    format = "csv"
    suffix = ".csv"

    def render(self, board: Leaderboard) -> str:
        return csv_frame(board.summary).to_csv(index=False)


class HtmlRenderer(LeaderboardRenderer):
    """``leaderboard.html``: the self-contained page with figures and the listening view."""

    format = "html"
    suffix = ".html"
    needs_listening_view = True

    def render(self, board: Leaderboard) -> str:
        return render_html(
            board.summary,
            tables=board.tables,
            legend=board.legend,
            n_runs=len(board.loaded.run_ids),
            listening=board.listening,
        )


BUILTIN_RENDERERS: tuple[type[LeaderboardRenderer], ...] = (
    MarkdownRenderer,
    CsvRenderer,
    HtmlRenderer,
)


@hookimpl
def ttsadapt_register_leaderboard_renderers() -> list[type]:
    """The built-in formats: Markdown, CSV, HTML."""
    return list(BUILTIN_RENDERERS)


def renderer_classes(pm: pluggy.PluginManager | None = None) -> list[type[LeaderboardRenderer]]:
    """The renderers of every plugin of ``pm``, the built-ins first.

    The built-ins come from this module's hook implementation, also where ``pm`` does not have
    this module registered (or is None). A plugin whose hook raises or returns something other
    than a :class:`LeaderboardRenderer` subclass with a ``format`` and a ``suffix``, and a format
    registered twice, are a :class:`PluginError` naming the plugin(s).
    """
    module = sys.modules[__name__]
    sources: list[tuple[str, Any]] = []
    if pm is None or not pm.is_registered(module):
        sources.append(
            ("leaderboard renderers (built-in)", ttsadapt_register_leaderboard_renderers)
        )
    if pm is not None:
        # pluggy calls the last registered first; registration order reads better here
        sources += [
            (impl.plugin_name, impl.function) for impl in getattr(pm.hook, HOOK).get_hookimpls()
        ]
    found: dict[str, tuple[type[LeaderboardRenderer], str]] = {}
    for plugin_name, function in sources:
        try:
            result = function()
        except Exception as exc:  # named, with the plugin, below
            raise PluginError(
                f"plugin '{plugin_name}' raised in {HOOK}: {type(exc).__name__}: {exc}"
            ) from exc
        for cls in result or []:
            _check_renderer(cls, plugin_name)
            if cls.format in found:
                other_cls, other = found[cls.format]
                raise PluginError(
                    f"leaderboard format '{cls.format}' is registered twice: by plugin '{other}' "
                    f"({other_cls.__module__}.{other_cls.__qualname__}) and by plugin "
                    f"'{plugin_name}' ({cls.__module__}.{cls.__qualname__}). Rename one, or "
                    f"disable one with -p no:{plugin_name}."
                )
            found[cls.format] = (cls, plugin_name)
    return [cls for cls, _ in found.values()]


def _check_renderer(cls: Any, plugin_name: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, LeaderboardRenderer)):
        raise PluginError(
            f"plugin '{plugin_name}' returned {cls!r} from {HOOK}; expected a subclass of "
            "ttsadapt.leaderboard.LeaderboardRenderer"
        )
    if not cls.format or not cls.suffix.startswith("."):
        raise PluginError(
            f"plugin '{plugin_name}': {cls.__name__} needs a `format` (got {cls.format!r}) and a "
            f"`suffix` beginning with a dot (got {cls.suffix!r})"
        )
