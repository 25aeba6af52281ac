"""Runtime pieces shared by the built-in metrics: their cache folder and thread settings. Input
checks and per-item error rows are public, for every metric author: :mod:`ttsadapt.metric_helpers`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def cache_root() -> Path:
    """ttsadapt's cache folder: ``$TTSADAPT_CACHE`` or ``~/.cache/ttsadapt``."""
    from ttsadapt.paths import cache_root as root

    return root()


def torch_threads() -> int:
    """Threads for CPU inference: all cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def ort_options(threads: int | None = None):
    """onnxruntime session options for the metrics' CPU inference: ``threads`` intra-op threads
    (default: all cores), one inter-op thread, and no spin-waiting. Spinning buys a little latency
    on an idle machine but burns a whole core per waiting thread when other jobs share the cores
    (measured: DNS-MOS 30 % more CPU time on a loaded 2-core machine)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch_threads()
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def torch_thread_limit(n: int) -> contextlib.AbstractContextManager[None]:
    """Run a block with at most ``n`` torch intra-op threads, restoring the setting afterwards.

    For small recurrent models (resemblyzer's 3x256 LSTM) a second thread adds a barrier per time
    step; on a shared machine the waiting thread spins, which cost 6x the CPU time of one thread."""
    from ttsadapt.threads import torch_threads

    return torch_threads(n, at_most=True)
