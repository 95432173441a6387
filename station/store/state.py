"""The station's durable state: the append-only journal and its projections.

One SQLite file (WAL, ``synchronous=FULL``). Every fact is an event with a
strictly increasing ``seq`` (no gaps: allocated inside the write
transaction), a unique id, the wall time and whether it was trusted, the boot
id and a monotonic timestamp. Trips, charge sessions and bay states are
projections written in the same transaction as the event that changes them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from station.clock import Clock
from station.errors import DomainError, StorageError
from station.model import Reservation, ReservationStatus
from station.store.sqlite import connect, migrate

_LOGGER = logging.getLogger(__name__)

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE journal (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        at TEXT NOT NULL,
        wall_trusted INTEGER NOT NULL,
        boot_id TEXT NOT NULL,
        mono REAL NOT NULL,
        bay TEXT, vehicle TEXT, member_id TEXT, trip_id TEXT, reservation_id TEXT,
        data TEXT NOT NULL
    );
    CREATE TABLE acks (up_to INTEGER PRIMARY KEY, at TEXT NOT NULL);
    CREATE TABLE trips (
        trip_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        half TEXT NOT NULL,
        member_id TEXT, reservation_id TEXT, vehicle TEXT NOT NULL, bay TEXT NOT NULL,
        start_station TEXT, end_station TEXT,
        started_seq INTEGER, started_at TEXT, started_mono REAL, started_boot TEXT, started_trusted INTEGER,
        ended_seq INTEGER, ended_at TEXT, duration_s REAL, price_cents INTEGER,
        status TEXT NOT NULL CHECK (status IN ('open', 'departed', 'ended', 'cancelled'))
    );
    CREATE INDEX trips_open ON trips(status) WHERE status = 'open';
    CREATE TABLE charge_sessions (
        session_id TEXT PRIMARY KEY, bay TEXT NOT NULL, vehicle TEXT,
        started_seq INTEGER NOT NULL, started_at TEXT NOT NULL,
        ended_seq INTEGER, ended_at TEXT, wh REAL, status TEXT NOT NULL
    );
    CREATE TABLE bays (
        bay TEXT PRIMARY KEY, vehicle TEXT, charge_state TEXT NOT NULL, lifetime_wh REAL NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE reservations (
        reservation_id TEXT PRIMARY KEY, member_id TEXT NOT NULL, vehicle TEXT NOT NULL,
        start TEXT NOT NULL, "end" TEXT NOT NULL, pickup TEXT NOT NULL, dropoff TEXT NOT NULL, status TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX reservations_member ON reservations(member_id);
    CREATE INDEX reservations_vehicle ON reservations(vehicle);
    CREATE TABLE documents (
        type TEXT PRIMARY KEY, version INTEGER NOT NULL, issued_at TEXT, expires_at TEXT, applied_at TEXT NOT NULL,
        size INTEGER NOT NULL, digest TEXT
    ) WITHOUT ROWID;
    CREATE TABLE unlock_requests (request_id TEXT PRIMARY KEY, decision TEXT NOT NULL) WITHOUT ROWID
    """,
)

_EVENT_COLUMNS = "seq, id, type, at, wall_trusted, boot_id, mono, bay, vehicle, member_id, trip_id, reservation_id, data"


def iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True, kw_only=True)
class TripRow:
    trip_id: str
    kind: str
    half: str
    member_id: str | None
    reservation_id: str | None
    vehicle: str
    bay: str
    start_station: str | None
    end_station: str | None
    started_at: datetime | None
    started_mono: float | None
    started_boot: str | None
    started_trusted: bool
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BayRow:
    bay: str
    vehicle: str | None
    charge_state: str
    lifetime_wh: float


class Tx:
    """One write transaction: events appended here commit together with the
    projection changes made through the same object."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._conn = store.conn
        self.events: list[dict[str, Any]] = []

    def append(
        self,
        type_: str,
        *,
        bay: str | None = None,
        vehicle: str | None = None,
        member_id: str | None = None,
        trip_id: str | None = None,
        reservation_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        store = self._store
        seq = store._next_seq
        event = {
            "seq": seq,
            "id": str(uuid.uuid4()),
            "type": type_,
            "at": iso(store.clock.now()),
            "wall_trusted": store.wall_trusted(),
            "boot_id": store.boot_id,
            "monotonic": round(store.clock.monotonic(), 6),
            "station": store.station_id,
            "bay": bay,
            "vehicle": vehicle,
            "member_id": member_id,
            "trip_id": trip_id,
            "reservation_id": reservation_id,
            "data": data or {},
        }
        self._conn.execute(
            f"INSERT INTO journal ({_EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                seq, event["id"], type_, event["at"], int(event["wall_trusted"]), store.boot_id, event["monotonic"],
                bay, vehicle, member_id, trip_id, reservation_id, json.dumps(event["data"], separators=(",", ":")),
            ),
        )
        store._next_seq = seq + 1
        self.events.append(event)
        return event

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    # -- projections ------------------------------------------------------
    def open_trip(self, event: dict[str, Any], *, kind: str, half: str, start_station: str | None,
                  end_station: str | None) -> None:
        self._conn.execute(
            "INSERT INTO trips (trip_id, kind, half, member_id, reservation_id, vehicle, bay, start_station, end_station,"
            " started_seq, started_at, started_mono, started_boot, started_trusted, status)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?, 'open')",
            (event["trip_id"], kind, half, event["member_id"], event["reservation_id"], event["vehicle"], event["bay"],
             start_station, end_station, event["seq"], event["at"], event["monotonic"], event["boot_id"],
             int(event["wall_trusted"])),
        )

    def close_trip(self, trip_id: str, event: dict[str, Any], *, status: str, duration_s: float | None,
                   price_cents: int | None) -> None:
        cur = self._conn.execute(
            "UPDATE trips SET status=?, ended_seq=?, ended_at=?, duration_s=?, price_cents=? WHERE trip_id=? AND status='open'",
            (status, event["seq"], event["at"], duration_s, price_cents, trip_id),
        )
        if cur.rowcount != 1:
            raise DomainError(f"trip {trip_id} is not open")

    def record_arrival(self, event: dict[str, Any], *, start_station: str | None, end_station: str) -> None:
        self._conn.execute(
            "INSERT INTO trips (trip_id, kind, half, member_id, reservation_id, vehicle, bay, start_station, end_station,"
            " ended_seq, ended_at, status) VALUES (?, 'one_way', 'arrival', ?,?,?,?,?,?,?,?, 'ended')",
            (event["trip_id"], event["member_id"], event["reservation_id"], event["vehicle"], event["bay"],
             start_station, end_station, event["seq"], event["at"]),
        )

    def set_bay(self, bay: str, *, vehicle: str | None, charge_state: str, lifetime_wh: float) -> None:
        self._conn.execute(
            "INSERT INTO bays (bay, vehicle, charge_state, lifetime_wh) VALUES (?,?,?,?)"
            " ON CONFLICT(bay) DO UPDATE SET vehicle=excluded.vehicle, charge_state=excluded.charge_state,"
            " lifetime_wh=excluded.lifetime_wh",
            (bay, vehicle, charge_state, lifetime_wh),
        )

    def start_charge(self, event: dict[str, Any]) -> str:
        session_id = str(uuid.uuid4())
        self._conn.execute(
            "INSERT INTO charge_sessions (session_id, bay, vehicle, started_seq, started_at, status)"
            " VALUES (?,?,?,?,?, 'charging')",
            (session_id, event["bay"], event["vehicle"], event["seq"], event["at"]),
        )
        return session_id

    def end_charge(self, bay: str, event: dict[str, Any], *, wh: float, status: str) -> None:
        self._conn.execute(
            "UPDATE charge_sessions SET ended_seq=?, ended_at=?, wh=?, status=? WHERE bay=? AND status='charging'",
            (event["seq"], event["at"], wh, status, bay),
        )

    def set_meta(self, key: str, value: Any) -> None:
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, json.dumps(value)),
        )


class StateStore:
    def __init__(self, path: Path, *, station_id: str, boot_id: str, clock: Clock,
                 wall_trusted: Callable[[], bool] = lambda: False) -> None:
        self.path = path
        self.station_id = station_id
        self.boot_id = boot_id
        self.clock = clock
        self.wall_trusted = wall_trusted
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self.conn = connect(path, synchronous="FULL")
        migrate(self.conn, path, MIGRATIONS)
        # The journal feed reads on its own connection, in a thread, so a page of
        # 1000 events never holds the event loop (WAL: readers never block writers).
        self._feed = connect(path, readonly=True)
        self._feed_lock = threading.Lock()
        self._next_seq = (self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()[0]) + 1
        stored = self.get_meta("station_id")
        if stored is None:
            with self.transaction() as tx:
                tx.set_meta("station_id", station_id)
        elif stored != station_id:
            raise StorageError(f"{path}: this database belongs to station {stored!r}, not {station_id!r}")

    def close(self) -> None:
        self._feed.close()
        self.conn.close()

    # -- transactions and listeners ----------------------------------------
    def subscribe(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        tx = Tx(self)
        first_seq = self._next_seq
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise StorageError(f"{self.path}: cannot write: {err}") from err
        try:
            yield tx
            self.conn.execute("COMMIT")
        except BaseException:
            self._next_seq = first_seq
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        for event in tx.events:
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:  # a listener must never undo or block a commit
                    _LOGGER.exception("journal listener %r failed on %s", listener, event["type"])

    def append(self, type_: str, **fields: Any) -> dict[str, Any]:
        with self.transaction() as tx:
            return tx.append(type_, **fields)

    # -- journal -----------------------------------------------------------
    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    @property
    def acked_seq(self) -> int:
        return int(self.get_meta("acked_seq") or 0)

    def _row_to_event(self, row: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
        seq, id_, type_, at, trusted, boot, mono, bay, vehicle, member, trip, res, data = row
        return {
            "seq": seq, "id": id_, "type": type_, "at": at, "wall_trusted": bool(trusted), "boot_id": boot,
            "monotonic": mono, "station": self.station_id, "bay": bay, "vehicle": vehicle, "member_id": member,
            "trip_id": trip, "reservation_id": res, "data": json.loads(data),
        }

    def feed_after(self, after: int, limit: int) -> list[dict[str, Any]]:
        """``events_after`` on the feed connection: safe to call from a thread."""
        with self._feed_lock:
            rows = self._feed.execute(
                f"SELECT {_EVENT_COLUMNS} FROM journal WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            ).fetchall()
        return [self._row_to_event(r) for r in rows]

    def events_after(self, after: int, limit: int) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM journal WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        ).fetchall()
        return [self._row_to_event(r) for r in rows]

    def acknowledge(self, up_to: int) -> int:
        if up_to > self.last_seq:
            raise DomainError(f"cannot acknowledge seq {up_to}: the journal ends at {self.last_seq}")
        if up_to <= self.acked_seq:
            return self.acked_seq
        with self.transaction() as tx:
            tx.set_meta("acked_seq", up_to)
            tx.execute("INSERT OR REPLACE INTO acks (up_to, at) VALUES (?, ?)", (up_to, iso(self.clock.now())))
        return up_to

    def prune(self, retention: timedelta) -> int:
        """Delete events acknowledged longer than ``retention`` ago."""
        cutoff = iso(self.clock.now() - retention)
        row = self.conn.execute("SELECT MAX(up_to) FROM acks WHERE at <= ?", (cutoff,)).fetchone()
        if not row or row[0] is None:
            return 0
        with self.transaction() as tx:
            n = tx.execute("DELETE FROM journal WHERE seq <= ? AND seq < ?", (row[0], self.last_seq)).rowcount
        return n

    # -- meta ----------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    # -- projections ---------------------------------------------------------
    def open_trips(self) -> list[TripRow]:
        rows = self.conn.execute(
            "SELECT trip_id, kind, half, member_id, reservation_id, vehicle, bay, start_station, end_station,"
            " started_at, started_mono, started_boot, started_trusted, status FROM trips WHERE status='open'"
        ).fetchall()
        return [
            TripRow(trip_id=r[0], kind=r[1], half=r[2], member_id=r[3], reservation_id=r[4], vehicle=r[5], bay=r[6],
                    start_station=r[7], end_station=r[8], started_at=parse_iso(r[9]), started_mono=r[10],
                    started_boot=r[11], started_trusted=bool(r[12]), status=r[13])
            for r in rows
        ]

    def bays(self) -> dict[str, BayRow]:
        rows = self.conn.execute("SELECT bay, vehicle, charge_state, lifetime_wh FROM bays").fetchall()
        return {r[0]: BayRow(bay=r[0], vehicle=r[1], charge_state=r[2], lifetime_wh=r[3]) for r in rows}

    # -- reservations ----------------------------------------------------------
    @staticmethod
    def _res(row: tuple[Any, ...]) -> Reservation:
        return Reservation(
            reservation_id=row[0], member_id=row[1], vehicle=row[2], start=parse_iso(row[3]),  # type: ignore[arg-type]
            end=parse_iso(row[4]), pickup=row[5], dropoff=row[6], status=ReservationStatus(row[7]),  # type: ignore[arg-type]
        )

    _RES_COLS = 'reservation_id, member_id, vehicle, start, "end", pickup, dropoff, status'

    def reservations_for_member(self, member_id: str) -> list[Reservation]:
        rows = self.conn.execute(f"SELECT {self._RES_COLS} FROM reservations WHERE member_id=?", (member_id,))
        return [self._res(r) for r in rows]

    def reservations_for_vehicles(self, vehicles: Sequence[str]) -> list[Reservation]:
        if not vehicles:
            return []
        marks = ",".join("?" * len(vehicles))
        rows = self.conn.execute(
            f"SELECT {self._RES_COLS} FROM reservations WHERE vehicle IN ({marks}) AND status='confirmed'", tuple(vehicles)
        )
        return [self._res(r) for r in rows]

    def reservation(self, reservation_id: str) -> Reservation | None:
        row = self.conn.execute(f"SELECT {self._RES_COLS} FROM reservations WHERE reservation_id=?", (reservation_id,)).fetchone()
        return None if row is None else self._res(row)

    def document(self, type_: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT version, issued_at, expires_at, applied_at, size, digest FROM documents WHERE type=?", (type_,)
        ).fetchone()
        if row is None:
            return None
        return {"version": row[0], "issued_at": row[1], "expires_at": row[2], "applied_at": row[3], "size": row[4],
                "digest": row[5]}

    # -- remote unlock idempotency ---------------------------------------------
    def unlock_answer(self, request_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT decision FROM unlock_requests WHERE request_id=?", (request_id,)).fetchone()
        return None if row is None else json.loads(row[0])
