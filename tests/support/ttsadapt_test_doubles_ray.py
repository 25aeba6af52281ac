"""Test doubles for the cluster executor: a method whose worker process dies, a backbone that
declares resources, and a ledger of run starts (to prove no run is executed twice).

Load together with ``ttsadapt_test_doubles`` (``-p ttsadapt_test_doubles -p ttsadapt_test_doubles_ray``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from ttsadapt_test_doubles import DoubleNudgeMethod, DoubleToneBackbone, NudgeParams

from ttsadapt.markers import hookimpl

LEDGER_ENV = "TTSADAPT_TEST_LEDGER"


class CrashParams(NudgeParams):
    marker: str  # a file counting how often the method was started (the count survives a crash)
    crash_times: int = 1  # the first N starts kill their own process


class DoubleCrashMethod(DoubleNudgeMethod):
    """Kills its own process (``os._exit``, as an out-of-memory kill would) on its first
    ``crash_times`` starts, then trains like ``double_nudge``."""

    name = "double_crash"
    description = "test double: the worker process dies the first crash_times times"
    Params = CrashParams

    def adapt(self, backbone, data, ctx):
        marker = Path(self.params.marker)
        starts = int(marker.read_text()) if marker.is_file() else 0
        marker.write_text(str(starts + 1))
        if starts < self.params.crash_times:
            (ctx.run_dir / "about_to_die.txt").write_text("partial output of a dying worker\n")
            os._exit(17)
        return super().adapt(backbone, data, ctx)


class DoubleHeavyTone(DoubleToneBackbone):
    """The tone backbone declaring what a real model would: CPUs, a GPU and memory."""

    name = "double_heavy_tone"
    resources: ClassVar[dict[str, float | None]] = {"num_cpus": 2, "num_gpus": 1, "memory_gb": 0.25}


@hookimpl
def ttsadapt_register_backbones():
    return [DoubleHeavyTone]


@hookimpl
def ttsadapt_register_methods():
    return [DoubleCrashMethod]


@hookimpl
def ttsadapt_run_started(run):
    """Append ``run_id pid`` to ``$TTSADAPT_TEST_LEDGER`` (one short O_APPEND write: atomic)."""
    ledger = os.environ.get(LEDGER_ENV)
    if ledger:
        fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{run['run_id']} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
