"""``borne demo --scenario``: a scripted day of the pilot on an accelerated clock.

The real core (authorization, journal, trips, tariff, charging) runs against
simulated devices on a :class:`~station.clock.ManualClock`; each step checks
what the station did and the run fails if any step misbehaved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from station.clock import ManualClock
from station.demo import CARDS, UNKNOWN, describe, reservations_document, roster_document
from station.service import Station


class _Battery(Protocol):
    soc_wh: float
    plugged: bool


class _SimPlug(Protocol):
    battery: _Battery
    relay_on: bool


class _SimReader(Protocol):
    def present(self, uid: bytes, ndef: bytes | None = None) -> None: ...


@dataclass(slots=True)
class Check:
    step: str
    ok: bool
    detail: str


class Scenario:
    def __init__(self, station: Station, clock: ManualClock, reader: _SimReader, plugs: dict[str, _SimPlug],
                 releases: dict[str, Any], out: Callable[[str], None] = print) -> None:
        self.station = station
        self.clock = clock
        self.reader = reader
        self.plugs = plugs
        self.releases = releases
        self.out = out
        self.events: list[dict[str, Any]] = []
        self.checks: list[Check] = []
        station.subscribe(self._seen)

    def _seen(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        line = describe(event)
        if line:
            self.out(f"  {self.clock.now():%H:%M} {line}")

    def check(self, step: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(step, ok, detail))
        self.out(f"{'  ok ' if ok else 'FAIL '} {step}" + (f" — {detail}" if detail and not ok else ""))

    def last(self, type_: str) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if e["type"] == type_), None)

    async def tap(self, name_or_uid: str) -> dict[str, Any] | None:
        uid = CARDS.get(name_or_uid, name_or_uid)
        before = len(self.events)
        self.reader.present(bytes.fromhex(uid))
        for _ in range(50):
            await self.clock.advance(0.1, step=0.1)
            taps = [e for e in self.events[before:] if e["type"] == "card.tapped"]
            if taps:
                return taps[-1]
        return None

    async def run(self) -> bool:
        st, clock = self.station, self.clock
        self.out(f"scenario: a day at station {st.station_id}, clock starts {clock.now():%Y-%m-%d %H:%M} UTC")
        r1 = await st.apply_document(roster_document(clock.now()), expected_type="roster")
        r2 = await st.apply_document(reservations_document(clock.now()), expected_type="reservations")
        self.check("roster and reservations applied", r1.get("applied") and r2.get("applied"), f"{r1} {r2}")

        tap = await self.tap(UNKNOWN)
        self.check("an unknown card is refused", bool(tap) and tap["data"]["reason"] == "unknown_card", str(tap))
        tap = await self.tap("dave")
        self.check("a suspended member is refused", bool(tap) and tap["data"]["reason"] == "member_suspended", str(tap))

        tap = await self.tap("alice")
        started = self.last("trip.started")
        self.check("reserved round trip: alice takes ami-1", bool(tap) and tap["data"]["reason"] == "reservation"
                   and started is not None and started["vehicle"] == "ami-1", str(tap))
        self.check("plug 1 is off before the release", not self.plugs["1"].relay_on and self.releases["1"].pulses == 1)
        self.plugs["1"].battery.soc_wh = 1500.0  # she drives

        await clock.advance(5 * 60, step=5)
        tap = await self.tap("bob")
        self.check("walk-up: bob takes ami-2 (no reservation of it within the hour)",
                   bool(tap) and tap["data"]["reason"] == "walk_up" and tap["vehicle"] == "ami-2", str(tap))
        await clock.advance(20 * 60, step=5)
        tap = await self.tap("bob")
        ended = self.last("trip.ended")
        self.check("bob returns after 20 min: free", bool(ended) and ended["data"]["price_cents"] == 0, str(ended))

        await clock.advance(25 * 60, step=5)
        tap = await self.tap("alice")
        ended = self.last("trip.ended")
        self.check("alice returns after 50 min: 0.50 EUR",
                   bool(ended) and ended["vehicle"] == "ami-1" and ended["data"]["price_cents"] == 50, str(ended))
        self.check("plug 1 is on again", self.plugs["1"].relay_on)
        await clock.advance(60, step=5)
        self.check("ami-1 charges", any(e["type"] == "charge.started" and e["bay"] == "1" for e in self.events))

        until_carol = 3 * 3600 - (clock.now() - self._t0).total_seconds() + 60
        await clock.advance(until_carol, step=5)
        tap = await self.tap("carol")
        started = self.last("trip.started")
        self.check("one-way departure: carol takes ami-2 to bazouges", bool(started) and started["member_id"] == "m-carol"
                   and started["data"]["kind"] == "one_way" and started["data"]["end_station"] == "bazouges", str(tap))

        until_erin = 4 * 3600 - (clock.now() - self._t0).total_seconds() + 600
        await clock.advance(until_erin, step=5)
        self.plugs["2"].battery.soc_wh = 1000.0  # ami-3 arrives with a low battery
        tap = await self.tap("erin")
        ended = self.last("trip.ended")
        self.check("one-way arrival: erin brings ami-3 from bazouges", bool(ended) and ended["vehicle"] == "ami-3"
                   and ended["data"]["half"] == "arrival" and ended["bay"] == "2", str(ended))

        for _ in range(8 * 60):
            await clock.advance(60, step=5)
            if any(e["type"] == "charge.completed" and e["bay"] == "1" for e in self.events):
                break
        done = next((e for e in self.events if e["type"] == "charge.completed" and e["bay"] == "1"), None)
        self.check("ami-1 charges fully, then the plug is switched off",
                   bool(done) and done["data"]["wh"] > 3000 and not self.plugs["1"].relay_on, str(done))

        seqs = [e["seq"] for e in st.store.events_after(0, 100_000)]
        self.check("the journal has no gap", seqs == list(range(1, len(seqs) + 1)), f"{len(seqs)} events")
        ok = all(c.ok for c in self.checks)
        passed = sum(c.ok for c in self.checks)
        self.out(f"scenario: {passed} passed, {len(self.checks) - passed} failed")
        return ok

    async def play(self) -> bool:
        self._t0 = self.clock.now()
        tasks = [asyncio.create_task(self.station.run_reader(), name="reader")]
        tasks += [asyncio.create_task(b.run(), name=f"bay-{b.bay}") for b in self.station.bays.values()]
        try:
            return await self.run()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
