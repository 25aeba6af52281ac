"""Open a SQLite cache file in WAL mode so that several processes may read and write it at once.

Switching a fresh file to WAL takes an exclusive lock for a moment, and SQLite answers a second
process that asks at that instant with "database is locked" at once, without waiting out the
connection's busy timeout. Two workers opening the same new cache together hit that race, so the
switch is retried here until the timeout is spent.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


def connect_wal(path: Path, schema: str, timeout: float = 60.0) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode with ``schema`` (one ``CREATE ... IF NOT EXISTS``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), timeout=timeout)
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(schema)
            db.commit()
            return db
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
