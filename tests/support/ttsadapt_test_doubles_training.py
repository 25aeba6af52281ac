"""Test double: a plugin that observes training through the ``ttsadapt_training_step`` hook.

Every call is appended to :data:`CALLS` as ``(run_id, step, values)``; a test clears it first.
"""

from __future__ import annotations

from typing import Any

from ttsadapt.markers import hookimpl

CALLS: list[tuple[str, int, dict[str, Any]]] = []


@hookimpl
def ttsadapt_training_step(run_id: str, step: int, values: dict[str, float]) -> None:
    CALLS.append((run_id, step, dict(values)))
