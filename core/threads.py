"""torch's intra-op thread count, set for a block and restored after it.

Float sums depend on how work is split across threads, so the thread count is part of what makes
a number reproducible: the runner pins it per run (``[resources] num_cpus``), and metrics with
small recurrent models cap it (a second thread only adds a barrier per time step).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def torch_threads(n: int | None, at_most: bool = False) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads (``at_most``: only lower the count, never
    raise it; ``None``: leave it), restoring the previous count afterwards."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    wanted = min(n, before) if at_most else n
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
