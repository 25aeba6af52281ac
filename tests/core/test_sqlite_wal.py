"""Several workers opening the same fresh cache file at one instant all get in.

Switching a new SQLite file to WAL answers a second process "database is locked" at once, without
waiting out the busy timeout; before ``connect_wal`` retried, about one open in fifteen failed this
way when six processes raced (and CI failed on it once, in the two-process score-cache test).
"""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

from ttsadapt.scoring import ScoreCache
from ttsadapt.types import ItemScore

WORKERS = 6


def _open_and_write(args: tuple[str, str, object]) -> str | None:
    path, who, barrier = args
    barrier.wait()  # type: ignore[attr-defined]
    try:
        cache = ScoreCache(path)  # type: ignore[arg-type]
        cache.put_many("m", [(who, ItemScore(who, {"v": 1.0}))])
        cache.close()
    except sqlite3.Error as exc:  # the test reports what a worker saw
        return repr(exc)
    return None


def test_six_workers_open_one_fresh_score_cache_at_once(tmp_path):
    ctx = mp.get_context("spawn")
    failures: list[str] = []
    with ctx.Manager() as manager, ctx.Pool(WORKERS) as pool:
        for attempt in range(8):
            path = str(tmp_path / f"scores-{attempt}.sqlite")
            barrier = manager.Barrier(WORKERS)
            jobs = [(path, f"w{i}", barrier) for i in range(WORKERS)]
            failures += [f for f in pool.map(_open_and_write, jobs) if f]
            cache = ScoreCache(tmp_path / f"scores-{attempt}.sqlite")
            entries = cache.get_many([f"w{i}" for i in range(WORKERS)])
            cache.close()
            assert failures or len(entries) == WORKERS
    assert failures == []
