"""Child process for the crash test: taps, releases, returns and charges in a
loop on a real SQLite file, printing each event once its commit returned.

Run: python -m tests.core.crash_child DATA_DIR
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from integrations.simulated import SimulatedPlug, SimulatedReader, SimulatedRelease
from station.bootstrap import Devices, build_station
from station.clock import ManualClock
from station.demo import CARDS, demo_config, reservations_document, roster_document
from station.model import CardPresented


async def main(data_dir: Path) -> None:
    clock = ManualClock(datetime(2026, 6, 1, 7, 0, tzinfo=UTC))
    config = demo_config(data_dir, plug={"transport": "simulated", "poll_interval_s": 5.0})
    plugs = {b.id: SimulatedPlug(clock) for b in config.bays}
    station = build_station(config, clock=clock, boot=str(uuid.uuid4()),
                            devices=Devices(plugs=dict(plugs), releases={b.id: SimulatedRelease() for b in config.bays},
                                            reader=SimulatedReader()))
    out = sys.stdout
    station.subscribe(lambda e: (out.write(f"{e['seq']} {e['id']} {e['type']}\n"), out.flush()))
    if station.roster.info is None:
        await station.apply_document(roster_document(clock.now()), expected_type="roster")
    if station.store.document("reservations") is None:
        await station.apply_document(reservations_document(clock.now()), expected_type="reservations")
    print("READY", flush=True)
    bays = [asyncio.create_task(b.run()) for b in station.bays.values()]
    try:
        while True:
            for who in ("alice", "bob"):
                await station.on_card(CardPresented(uid=bytes.fromhex(CARDS[who])))
                await clock.advance(10, step=5)
            await clock.advance(35 * 60, step=60)
            for who in ("bob", "alice"):
                await station.on_card(CardPresented(uid=bytes.fromhex(CARDS[who])))
                await clock.advance(10, step=5)
            await clock.advance(20 * 60, step=30)
    finally:
        for task in bays:
            task.cancel()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
