"""A test plugin for the leaderboard hooks: a JSON Lines format, and a record of the written hook.

Loaded with ``-p leaderboard_plugin_double`` (``tests/leaderboard`` is on ``sys.path``) or
registered on a plugin manager by the tests.
"""

from __future__ import annotations

import json
from typing import Any

from ttsadapt.leaderboard import Leaderboard, LeaderboardRenderer
from ttsadapt.markers import hookimpl

WRITTEN: list[tuple[str, dict[str, Any]]] = []  # (suite, paths) of every call


class HeadlineJsonl(LeaderboardRenderer):
    """One JSON object per system x headline metric: label, anchor flag, mean, rank."""

    format = "jsonl"
    suffix = ".jsonl"

    def render(self, board: Leaderboard) -> str:
        head = board.summary.table[board.summary.table["is_headline"]]
        return "".join(
            json.dumps(
                {
                    "system": r.label,
                    "anchor": bool(r.is_anchor),
                    "metric": r.metric,
                    "mean": float(r.mean),
                    "rank": None if r.rank is None or r.rank != r.rank else int(r.rank),
                }
            )
            + "\n"
            for r in head.itertuples()
        )


@hookimpl
def ttsadapt_register_leaderboard_renderers() -> list[type]:
    return [HeadlineJsonl]


@hookimpl
def ttsadapt_leaderboard_written(suite: str, paths: dict[str, Any]) -> None:
    WRITTEN.append((suite, dict(paths)))
