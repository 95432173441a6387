"""Opening SQLite files the way borne needs them.

WAL, foreign keys on, numbered migrations under ``PRAGMA user_version`` run in
one transaction after a backup of the file; a database newer than the code is
refused.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from station.errors import StorageError

_LOGGER = logging.getLogger(__name__)


def connect(path: Path, *, synchronous: str = "FULL", readonly: bool = False) -> sqlite3.Connection:
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn
    except sqlite3.Error as err:
        raise StorageError(f"{path}: cannot open database: {err}") from err


def migrate(conn: sqlite3.Connection, path: Path, migrations: Sequence[str]) -> None:
    """Bring the schema to ``len(migrations)``; migration i sets user_version i+1."""
    target = len(migrations)
    try:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as err:
        raise StorageError(f"{path}: not a borne database: {err}") from err
    if current > target:
        raise StorageError(f"{path}: schema version {current} is newer than this borne ({target}); refusing to open")
    if current == target:
        return
    if current > 0 and path.exists():
        backup = path.with_name(f"{path.name}.v{current}.bak")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copy2(path, backup)
        _LOGGER.info("backed up %s to %s before migrating", path, backup)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for version in range(current, target):
            for statement in _split(migrations[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={version + 1}")
        conn.execute("COMMIT")
    except sqlite3.Error as err:
        conn.execute("ROLLBACK")
        raise StorageError(f"{path}: migration to version {target} failed: {err}") from err


def _split(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
