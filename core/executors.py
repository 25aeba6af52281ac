"""Executors decide where runs execute. The default runs them one after another in-process.

An executor receives the planned runs and a function that executes one run (and writes its records
into the shared record store) and yields each outcome as it completes. Executors for a cluster
(Ray for the matrix of runs) plug in here without changing the runner.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tqdm.auto import tqdm


class Executor:
    name = ""

    def map(self, fn: Callable[[Any], Any], runs: Sequence[Any]) -> Iterator[Any]:
        raise NotImplementedError


class LocalExecutor(Executor):
    """In-process, sequential; models stay loaded between runs where components cache them."""

    name = "local"

    def map(self, fn: Callable[[Any], Any], runs: Sequence[Any]) -> Iterator[Any]:
        bar = tqdm(total=len(runs), desc="suite", unit="run", dynamic_ncols=True)
        try:
            for run in runs:
                bar.set_postfix_str(run.label()[:60])
                yield fn(run)
                bar.update(1)
        finally:
            bar.close()


EXECUTORS: dict[str, type[Executor]] = {"local": LocalExecutor}


def get_executor(name: str) -> Executor:
    from .errors import ConfigError

    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; available: {', '.join(sorted(EXECUTORS))}")
    return EXECUTORS[name]()
