"""Power can be cut at any moment: SIGKILL a busy station again and again.

After each kill the journal passes ``PRAGMA integrity_check``, every event the
child reported committed is there with the same id, ``seq`` has no gap, and no
trip is half-written. The number of kills is a parameter (``--crash-kills`` or
``BORNE_CRASH_KILLS``; default 200).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def kills(config: pytest.Config) -> int:
    value = config.getoption("--crash-kills") or os.environ.get("BORNE_CRASH_KILLS")
    return int(value) if value else 200


def check_database(db: Path, reported: dict[int, tuple[str, str]]) -> tuple[int, int]:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT seq, id, type, trip_id FROM journal ORDER BY seq").fetchall()
        seqs = [r[0] for r in rows]
        assert seqs == list(range(1, len(seqs) + 1)), "seq has a gap"
        by_seq = {r[0]: (r[1], r[2]) for r in rows}
        for seq, (id_, type_) in reported.items():
            assert by_seq.get(seq) == (id_, type_), f"reported event {seq} {type_} is missing or changed"
        started = {r[3] for r in rows if r[2] == "trip.started"}
        ended = {r[3] for r in rows if r[2] in ("trip.ended", "trip.cancelled")}
        trips = dict(conn.execute("SELECT trip_id, status FROM trips").fetchall())
        assert set(trips) == started, "trip rows and trip.started events differ"
        for trip_id, status in trips.items():
            assert (status in ("ended", "cancelled")) == (trip_id in ended), f"trip {trip_id} is half-written ({status})"
        open_count = sum(1 for s in trips.values() if s == "open")
        return len(rows), open_count
    finally:
        conn.close()


def _record(text: str, reported: dict[int, tuple[str, str]]) -> None:
    parts = text.split()
    if len(parts) == 3 and parts[0].isdigit():
        reported[int(parts[0])] = (parts[1], parts[2])


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_sigkill_never_loses_or_half_writes(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    n = kills(pytestconfig)
    rng = random.Random(20261122)
    data = tmp_path / "data"
    reported: dict[int, tuple[str, str]] = {}
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    total_events = 0
    for _ in range(n):
        child = subprocess.Popen([sys.executable, "-m", "tests.core.crash_child", str(data)], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert child.stdout is not None
        while (line := child.stdout.readline()).strip() != "READY":
            if not line:  # start-up itself must work, whatever the last kill interrupted
                child.kill()
                raise AssertionError(f"child did not start: {child.stderr.read() if child.stderr else ''}")
            _record(line, reported)
        time.sleep(rng.uniform(0.0, 0.25))
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=30)
        for text in out.splitlines():
            _record(text, reported)
        assert "Traceback" not in err, err
        total_events, open_trips = check_database(data / "station.db", reported)
        assert open_trips <= 2  # two cars, at most one trip each
    assert total_events > n, f"the child did too little: {total_events} events over {n} kills"
    print(json.dumps({"kills": n, "events": total_events, "reported": len(reported)}))
