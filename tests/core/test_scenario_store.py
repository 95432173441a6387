"""The scripted demo day, and the SQLite store's promises."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from station.bootstrap import run_scenario
from station.clock import ManualClock
from station.errors import StorageError
from station.store.state import StateStore

ROOT = Path(__file__).resolve().parents[2]


async def test_scenario_plays_a_day_in_process(tmp_path: Path) -> None:
    lines: list[str] = []
    assert await run_scenario(tmp_path, out=lines.append), "\n".join(lines)
    assert any("one-way arrival" in line for line in lines)
    assert lines[-1].endswith("0 failed")


def test_borne_demo_scenario_exits_0(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "station.cli", "--log-level", "WARNING", "demo", "--scenario",
                           "--data", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed, 0 failed" in proc.stdout


def _store(path: Path, station: str = "hede") -> StateStore:
    return StateStore(path, station_id=station, boot_id="b", clock=ManualClock())


def test_journal_is_wal_full_and_versioned(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.db")
    try:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == 1
        first = store.append("mode.changed", data={"to": "maintenance"})
        second = store.append("mode.changed", data={"to": "normal"})
        assert (first["seq"], second["seq"]) == (1, 2)
        assert first["boot_id"] == "b" and first["wall_trusted"] is False and first["station"] == "hede"
    finally:
        store.close()


def test_failed_transaction_leaves_no_gap(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.db")
    try:
        store.append("a")
        with pytest.raises(RuntimeError):
            with store.transaction() as tx:
                tx.append("b")
                raise RuntimeError("boom")
        store.append("c")
        assert [e["seq"] for e in store.events_after(0, 10)] == [1, 2]
        assert [e["type"] for e in store.events_after(0, 10)] == ["a", "c"]
    finally:
        store.close()


def test_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(StorageError, match="newer than this borne"):
        _store(path)


def test_database_of_another_station_is_refused(tmp_path: Path) -> None:
    _store(tmp_path / "s.db").close()
    with pytest.raises(StorageError, match="belongs to station 'hede'"):
        _store(tmp_path / "s.db", station="bazouges")


def test_ack_and_prune(tmp_path: Path) -> None:
    from datetime import timedelta

    clock = ManualClock()
    store = StateStore(tmp_path / "s.db", station_id="hede", boot_id="b", clock=clock)
    try:
        for i in range(5):
            store.append("x", data={"i": i})
        with pytest.raises(Exception, match="journal ends at 5"):
            store.acknowledge(6)
        assert store.acknowledge(3) == 3
        assert store.prune(timedelta(days=1)) == 0  # not yet past retention
        clock.set_wall(clock.now() + timedelta(days=2))
        assert store.prune(timedelta(days=1)) == 3
        assert [e["seq"] for e in store.events_after(0, 10)] == [4, 5]
        store.append("y")
        assert store.last_seq == 6  # seq keeps counting after a prune
    finally:
        store.close()
