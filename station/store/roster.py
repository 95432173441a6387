"""The member roster: members and their cards, from signed documents.

The roster lives in its own SQLite file so that applying a large one never
holds the journal's write lock. A full roster is built into a new file
(``roster-v<version>.db``, part by part when it comes in parts) and becomes
current by an atomic rename of the pointer file ``roster.current``: the old
roster answers every tap until that instant. A delta is applied in one
transaction on the current file. Either way, all or nothing.

Parts are staged in ``roster-build.db`` as they come, in tables without keys
(appending is cheap whatever the roster's size); when the last one arrives the
roster file is written from the staging in key order, which is where
duplicates are found, and the staging is dropped. Inserting 10^6 random card
refs part by part into keyed tables instead spends most of the apply moving
B-tree pages in and out of a small cache.

``apply_roster`` is a plain function over paths so that it can run in a
worker thread or process.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from station.documents import Header, check_applicable, parse_time, verify
from station.errors import DocumentRejected, StorageError
from station.model import Card, CardKind, Member, MemberStatus, RosterInfo
from station.store.sqlite import connect, migrate

_LOGGER = logging.getLogger(__name__)

POINTER = "roster.current"
BUILD = "roster-build.db"

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE members (
        member_id TEXT PRIMARY KEY, status TEXT NOT NULL, valid_from TEXT NOT NULL, valid_until TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE cards (
        ref TEXT PRIMARY KEY, member_id TEXT NOT NULL, kind TEXT NOT NULL, serial INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX cards_member ON cards(member_id);
    CREATE TABLE parts (part INTEGER PRIMARY KEY)
    """,
)

# The staging of a full roster sent in parts: rows as they come, checked at the end.
STAGING: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE parts (part INTEGER PRIMARY KEY);
    CREATE TABLE members (member_id TEXT NOT NULL, status TEXT NOT NULL, valid_from TEXT NOT NULL,
                          valid_until TEXT NOT NULL);
    CREATE TABLE cards (ref TEXT NOT NULL, member_id TEXT NOT NULL, kind TEXT NOT NULL, serial INTEGER NOT NULL)
    """,
)
STAGING_FORMAT = 2  # in the staging's meta; a staging of another format is discarded

_STATUSES = {s.value for s in MemberStatus}
_KINDS = {k.value for k in CardKind}
_REF = re.compile(r"[0-9a-f]{32}")
_TIMES_MEMO = 4096  # distinct valid_from/valid_until strings remembered while validating one document


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_file(data_dir: Path) -> Path | None:
    pointer = data_dir / POINTER
    try:
        name = pointer.read_text().strip()
    except FileNotFoundError:
        return None
    return data_dir / name


def _meta(conn: sqlite3.Connection) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}


def _set_meta(conn: sqlite3.Connection, **values: Any) -> None:
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        [(k, json.dumps(v)) for k, v in values.items()],
    )


def _rows(doc: dict[str, Any], *, where: str) -> tuple[list[tuple[str, ...]], list[tuple[Any, ...]]]:
    """Validate the members of a document; return member and card rows."""
    members = doc.get("members", [])
    if not isinstance(members, list):
        raise DocumentRejected("invalid_payload", f"{where}members must be a list")
    member_rows: list[tuple[str, ...]] = []
    card_rows: list[tuple[Any, ...]] = []
    times: dict[str, str] = {}  # a roster repeats a few dates: parse each once
    for i, m in enumerate(members):
        if not isinstance(m, dict):
            raise DocumentRejected("invalid_payload", f"{where}members[{i}] must be an object")
        mid, status = m.get("member_id"), m.get("status")
        if not isinstance(mid, str) or not mid or len(mid) > 128:
            raise DocumentRejected("invalid_payload", f"{where}members[{i}].member_id must be a non-empty string")
        if not isinstance(status, str) or status not in _STATUSES:
            raise DocumentRejected("invalid_payload", f"{where}members[{i}].status must be active, suspended or revoked")
        vf = _time(times, m.get("valid_from"), i, "valid_from")
        vu = _time(times, m.get("valid_until"), i, "valid_until")
        member_rows.append((mid, status, vf, vu))
        cards = m.get("cards", [])
        if not isinstance(cards, list):
            raise DocumentRejected("invalid_payload", f"{where}members[{i}].cards must be a list")
        for j, c in enumerate(cards):
            if not isinstance(c, dict):
                raise DocumentRejected("invalid_payload", f"{where}members[{i}].cards[{j}] must be an object")
            ref, kind, serial = c.get("ref"), c.get("kind", "uid"), c.get("serial", 0)
            if not isinstance(ref, str) or not _REF.fullmatch(ref):
                raise DocumentRejected("invalid_payload", f"{where}members[{i}].cards[{j}].ref must be 32 lowercase hex digits")
            if not isinstance(kind, str) or kind not in _KINDS:
                raise DocumentRejected("invalid_payload", f"{where}members[{i}].cards[{j}].kind must be uid or signed")
            if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
                raise DocumentRejected("invalid_payload", f"{where}members[{i}].cards[{j}].serial must be an integer >= 0")
            card_rows.append((ref, mid, kind, serial))
    return member_rows, card_rows


def _time(memo: dict[str, str], value: Any, i: int, name: str) -> str:
    """``value`` checked as an RFC 3339 time, as stored (isoformat)."""
    if isinstance(value, str):
        known = memo.get(value)
        if known is not None:
            return known
    normal = parse_time(value, f"members[{i}].{name}").isoformat()
    if len(memo) >= _TIMES_MEMO:
        memo.clear()
    memo[value] = normal
    return normal


def _insert(conn: sqlite3.Connection, members: list[tuple[str, ...]], cards: list[tuple[Any, ...]]) -> None:
    try:
        conn.executemany("INSERT INTO members VALUES (?,?,?,?)", members)
    except sqlite3.IntegrityError:
        raise DocumentRejected("duplicate_member", "a member appears twice in the roster") from None
    try:
        conn.executemany("INSERT INTO cards VALUES (?,?,?,?)", cards)
    except sqlite3.IntegrityError:
        raise DocumentRejected("duplicate_card", "a card is listed twice (for one or two members)") from None


def apply_roster(data_dir: str, body: bytes, *, keys: dict[str, bytes], station_id: str, now: str,
                 expected_type: str | None = "roster") -> dict[str, Any]:
    """Verify one roster document (or part) and apply it. Runs in a worker.

    Returns a summary; ``swapped`` is True when a full roster became current
    (the caller must reopen its read connection).
    """
    doc, head = verify(body, keys)
    check_applicable(head, expected_type=expected_type, station_id=station_id, now=parse_time(now, "now"))
    if head.type != "roster":
        raise DocumentRejected("wrong_type", f"expected a roster document, got {head.type}")
    folder = Path(data_dir)
    current = current_file(folder)
    current_version = 0
    if current is not None and current.exists():
        conn = connect(current, readonly=True)
        try:
            current_version = int(_meta(conn).get("version", 0))
        finally:
            conn.close()
    summary: dict[str, Any] = {"type": "roster", "kind": head.kind, "version": head.version, "part": head.part,
                               "parts": head.parts, "applied": False, "swapped": False}
    if head.kind == "delta":
        if current is None or head.base_version != current_version:
            raise DocumentRejected(
                "base_mismatch", f"delta on version {head.base_version}, this station has {current_version}", conflict=True
            )
        summary.update(_apply_delta(current, doc, head))
        return summary
    if head.version < current_version:
        raise DocumentRejected("lower_version", f"version {head.version} is lower than the current {current_version}")
    if head.version == current_version:
        summary["detail"] = "already at this version"
        return summary
    summary.update(_stage_full_part(folder, doc, head))
    return summary


def _apply_delta(path: Path, doc: dict[str, Any], head: Header) -> dict[str, Any]:
    members, cards = _rows(doc, where="")
    removed = doc.get("removed", [])
    if not isinstance(removed, list) or not all(isinstance(r, str) for r in removed):
        raise DocumentRejected("invalid_payload", "removed must be a list of member ids")
    conn = connect(path, synchronous="FULL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if int(_meta(conn).get("version", 0)) != head.base_version:
                raise DocumentRejected("base_mismatch", "the roster changed meanwhile", conflict=True)
            ids = [(m,) for m in removed] + [(row[0],) for row in members]
            conn.executemany("DELETE FROM cards WHERE member_id=?", ids)
            conn.executemany("DELETE FROM members WHERE member_id=?", ids)
            _insert(conn, members, cards)
            size = conn.execute("SELECT COUNT(*) FROM members").fetchone()[0]
            _set_meta(conn, version=head.version, issued_at=head.issued_at.isoformat(),
                      expires_at=head.expires_at.isoformat(), size=size)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    return {"applied": True, "size": size, "changed": len(members), "removed": len(removed)}


def _scratch(path: Path, *, synchronous: str = "OFF") -> sqlite3.Connection:
    """A file nobody reads yet (the staging, a roster being written): no WAL; a
    crash leaves it to :func:`cleanup`. Rollback journal only for the pages a
    transaction overwrites, which appending never does."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        return conn
    except sqlite3.Error as err:
        raise StorageError(f"{path}: cannot open database: {err}") from err


def _open_staging(build: Path, head: Header) -> sqlite3.Connection:
    # synchronous=NORMAL: each part is flushed at its commit (a few MB), never
    # left to pile up as dirty pages that a journal fsync would then wait behind.
    if build.exists():
        conn = _scratch(build, synchronous="NORMAL")
        try:
            meta = _meta(conn)
        except sqlite3.Error:
            meta = {}
        if (meta.get("version"), meta.get("parts"), meta.get("format")) == (head.version, head.parts, STAGING_FORMAT):
            return conn
        conn.close()
        _LOGGER.info("discarding staged roster v%s for v%s", meta.get("version"), head.version)
        _remove_db(build)
    conn = _scratch(build, synchronous="NORMAL")
    migrate(conn, build, STAGING)
    _set_meta(conn, version=head.version, parts=head.parts, format=STAGING_FORMAT)
    return conn


def _stage_full_part(folder: Path, doc: dict[str, Any], head: Header) -> dict[str, Any]:
    build = folder / BUILD
    if head.parts == 1:
        # A whole document: validated before anything is written, so a refusal
        # leaves no file behind.
        _rows(doc, where="")
    conn = _open_staging(build, head)
    try:
        if conn.execute("SELECT 1 FROM parts WHERE part=?", (head.part,)).fetchone():
            received = conn.execute("SELECT COUNT(*) FROM parts").fetchone()[0]
            if received < head.parts:
                return {"received": received, "detail": f"part {head.part} was already received"}
            # Every part is staged but the roster was not written (that attempt failed): write it now.
        else:
            members, cards = _rows(doc, where=f"part {head.part}: " if head.parts > 1 else "")
            doc.clear()  # the parsed part (tens of MB for 8 MiB) is no longer needed
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT INTO members VALUES (?,?,?,?)", members)
                conn.executemany("INSERT INTO cards VALUES (?,?,?,?)", cards)
                conn.execute("INSERT INTO parts VALUES (?)", (head.part,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            del members, cards
            received = conn.execute("SELECT COUNT(*) FROM parts").fetchone()[0]
            if received < head.parts:
                return {"received": received}
    finally:
        conn.close()
    try:
        final, size = _build_roster(folder, build, head)
    except DocumentRejected:
        _remove_db(build)  # a duplicate, within a part or across parts, poisons the whole version
        raise
    _commit_build(folder, final)
    _remove_db(build)
    return {"applied": True, "swapped": True, "size": size, "received": head.parts}


def _build_roster(folder: Path, build: Path, head: Header) -> tuple[Path, int]:
    """Write ``roster-v<version>.db`` from the staging, in key order (appends
    only: fast, and compact pages); duplicates fail the primary keys here."""
    final = folder / f"roster-v{head.version}.db"  # never the current file: its version is lower
    _remove_db(final)
    conn = _scratch(final)
    try:
        migrate(conn, final, MIGRATIONS)
        conn.execute("ATTACH DATABASE ? AS staging", (str(build),))
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DROP INDEX cards_member")  # built once at the end, from sorted keys
        with _Trickle(final):
            size = _fill_roster(conn)
        _set_meta(conn, version=head.version, issued_at=head.issued_at.isoformat(),
                  expires_at=head.expires_at.isoformat(), size=size)
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE staging")
        conn.execute("PRAGMA journal_mode=WAL")
    except BaseException:
        conn.close()
        _remove_db(final)
        raise
    conn.close()
    return final, size


def _fill_roster(conn: sqlite3.Connection) -> int:
    try:
        conn.execute("INSERT INTO members SELECT member_id, status, valid_from, valid_until"
                     " FROM staging.members ORDER BY member_id")
    except sqlite3.IntegrityError:
        raise DocumentRejected("duplicate_member", "a member appears twice in the roster") from None
    try:
        conn.execute("INSERT INTO cards SELECT ref, member_id, kind, serial FROM staging.cards ORDER BY ref")
    except sqlite3.IntegrityError:
        raise DocumentRejected("duplicate_card", "a card is listed twice (for one or two members)") from None
    conn.execute("CREATE INDEX cards_member ON cards(member_id)")  # as in MIGRATIONS
    return int(conn.execute("SELECT COUNT(*) FROM members").fetchone()[0])


class _Trickle:
    """Flush a file every ``interval`` seconds from a thread while SQLite writes
    it (the sqlite3 module lets go of the GIL meanwhile). A 200 MB roster left
    dirty and flushed at once would stall every other fsync on the disk, the
    journal's on the tap path among them, for 100 ms and more."""

    def __init__(self, path: Path, interval: float = 0.1) -> None:
        self._path = path
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="roster-flush", daemon=True)
        self._fd = -1

    def __enter__(self) -> _Trickle:
        self._fd = os.open(self._path, os.O_RDONLY)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        os.close(self._fd)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                os.fdatasync(self._fd)
            except OSError as err:  # the writer will meet the same trouble and report it
                _LOGGER.debug("flushing %s: %s", self._path, err)
                return


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass


def _commit_build(folder: Path, final: Path) -> None:
    fd = os.open(final, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp = folder / (POINTER + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(final.name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / POINTER)
    _fsync_dir(folder)


def _stale(folder: Path) -> list[Path]:
    current = current_file(folder)
    return [p for p in folder.glob("roster-*.db") if current is None or p.name != current.name]


def cleanup(folder: Path, *, background: bool = False) -> None:
    """Drop staging and rosters that are no longer current.

    ``background``: unlink in a short-lived thread, for callers on the event
    loop (freeing a 200 MB roster file takes tens of milliseconds)."""
    stale = _stale(folder)
    if not stale:
        return
    if background:
        threading.Thread(target=_remove_all, args=(stale,), name="roster-cleanup", daemon=True).start()
    else:
        _remove_all(stale)


def _remove_all(paths: list[Path]) -> None:
    for path in paths:
        _remove_db(path)


class RosterStore:
    """Read side of the roster, used on the tap path."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._conn: sqlite3.Connection | None = None
        self._info: RosterInfo | None = None
        cleanup(data_dir)
        for leftover in data_dir.glob("incoming-*.part"):  # parts in flight when the station stopped
            leftover.unlink(missing_ok=True)
        self.reopen()

    def reopen(self) -> None:
        old = self._conn
        path = current_file(self.data_dir)
        if path is None or not path.exists():
            self._conn, self._info = None, None
        else:
            conn = connect(path, synchronous="FULL")
            migrate(conn, path, MIGRATIONS)
            self._conn = conn
            self.refresh()
        if old is not None:
            old.close()
        cleanup(self.data_dir, background=True)

    def refresh(self) -> None:
        if self._conn is None:
            self._info = None
            return
        meta = _meta(self._conn)
        expires = meta.get("expires_at")
        self._info = RosterInfo(
            version=int(meta.get("version", 0)),
            size=int(meta.get("size", 0)),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            applied_at=None,
        )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def info(self) -> RosterInfo | None:
        return self._info

    def card(self, ref: str) -> Card | None:
        if self._conn is None:
            return None
        try:
            row = self._conn.execute("SELECT ref, member_id, kind, serial FROM cards WHERE ref=?", (ref,)).fetchone()
        except sqlite3.Error as err:
            raise StorageError(f"roster lookup failed: {err}") from err
        return None if row is None else Card(ref=row[0], member_id=row[1], kind=CardKind(row[2]), serial=row[3])

    def member(self, member_id: str) -> Member | None:
        if self._conn is None:
            return None
        row = self._conn.execute(
            "SELECT member_id, status, valid_from, valid_until FROM members WHERE member_id=?", (member_id,)
        ).fetchone()
        if row is None:
            return None
        return Member(member_id=row[0], status=MemberStatus(row[1]), valid_from=datetime.fromisoformat(row[2]),
                      valid_until=datetime.fromisoformat(row[3]))
