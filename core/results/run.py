"""The run summary: ``runs/<run_id>/run.json``, written last before the ``DONE`` marker.

Holds the run's identity (as its records), ``status`` (``ok`` or ``failed``), the ``error`` of a
failed run, and what the runner measured on the way: ``adapt`` (sizes, the selected checkpoint,
training statistics), ``data`` (clips kept and dropped), ``timings``, ``provenance``. The parts the
readers of a results folder rely on (status, error) are fields; the rest is kept as written.
"""

from __future__ import annotations

from .base import DiskModel
from .record import OptionalText, Text

__all__ = ["RunSummary"]


class RunSummary(DiskModel):
    """A run's summary: status, error, and what was measured."""

    kind = "run summary"

    run_id: OptionalText = None
    status: Text = "ok"
    error: OptionalText = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def first_error_line(self) -> str:
        """The first non-blank line of ``error`` (a failed run without one says so)."""
        for line in (self.error or "").splitlines():
            if line.strip():
                return line.strip()
        return "failed (run.json gives no error)" if not self.error else "(no error message)"
