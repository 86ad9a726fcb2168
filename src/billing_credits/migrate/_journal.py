"""The apply journal: which planned creates are done, so an interrupted apply resumes safely."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from billing_credits._errors import (
    MigrationError,
)

__all__ = ["Journal"]


class Journal:
    """What apply has done, in SQLite beside the plan: keys found or created, retired sources.

    Only a cache: apply reads the target before creating and trusts what it finds there, so a
    deleted journal, or one claiming a grant the target does not hold, never makes a duplicate
    or a skip. A journal belongs to one plan and one target (``Provider.identity()``): opening
    it for another is refused, so a rehearsal's journal is never mixed with a real run's.
    """

    def __init__(self, path: str | Path, *, plan: str, target: str) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS about (name TEXT PRIMARY KEY, value TEXT)")
        self._db.execute("CREATE TABLE IF NOT EXISTS created (key TEXT PRIMARY KEY, "
                         "target_id TEXT NOT NULL, at TEXT NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS retired (source_id TEXT PRIMARY KEY, "
                         "how TEXT NOT NULL, at TEXT NOT NULL)")
        for name, value in (("plan", plan), ("target", target)):
            self._db.execute("INSERT OR IGNORE INTO about VALUES (?, ?)", (name, value))
            stored = self._db.execute("SELECT value FROM about WHERE name = ?", (name,)).fetchone()[0]
            if stored != value:
                self._db.close()
                raise MigrationError(
                    f"journal {path} was written for another {name} ({stored[:40]}), by an "
                    "earlier apply. A journal only makes re-runs cheap (apply re-reads the "
                    f"target, so nothing is created twice without it): delete {path}, or give "
                    "another journal file (--journal FILE; apply_plan(journal=...)), and run "
                    "apply again")

    def created(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT key, target_id FROM created").fetchall())

    def retired(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT source_id FROM retired")}

    def is_retired(self, source_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM retired WHERE source_id = ?",
                                    (source_id,)).fetchone() is not None

    def record_created(self, key: str, target_id: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO created VALUES (?, ?, ?)",
                             (key, target_id, datetime.now(UTC).isoformat()))

    def record_retired(self, source_id: str, how: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO retired VALUES (?, ?, ?)",
                             (source_id, how, datetime.now(UTC).isoformat()))

    def close(self) -> None:
        with self._lock:
            self._db.close()
