"""An in-memory fake of ``station.ports.StationControl`` for integration tests.

It holds a :class:`StationSnapshot` the test edits, lets the test emit journal
events to subscribers, and records every command it receives.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from station.model import (
    Alert,
    BaySnapshot,
    Decision,
    Mode,
    Reason,
    RosterInfo,
    StationSnapshot,
)


def make_bay(bay: str = "1", **changes: Any) -> BaySnapshot:
    values: dict[str, Any] = dict(
        bay=bay,
        home_vehicle=f"ami-{bay}",
        vehicle=f"ami-{bay}",
        state="charging",
        relay_on=True,
        power_w=1234.5,
        energy_kwh=321.125,
        plug_reachable=True,
    )
    values.update(changes)
    return BaySnapshot(**values)


def make_snapshot(*, bays: tuple[BaySnapshot, ...] | None = None, **changes: Any) -> StationSnapshot:
    values: dict[str, Any] = dict(
        station="hede",
        name="Borne Hédé",
        version="0.1.0",
        mode=Mode.NORMAL,
        state="ok",
        roster=RosterInfo(
            version=42,
            size=120,
            expires_at=datetime(2026, 6, 8, 8, 0, tzinfo=UTC),
            applied_at=datetime(2026, 6, 1, 6, 0, tzinfo=UTC),
        ),
        reservations_version=7,
        journal_last_seq=120,
        journal_acked_seq=100,
        clock_trusted=True,
        last_sync=datetime(2026, 6, 1, 7, 30, tzinfo=UTC),
        unknown_card_rate=0.5,
        bays=bays if bays is not None else (make_bay("1"),),
        alerts=(),
    )
    values.update(changes)
    return StationSnapshot(**values)


class FakeStation:
    def __init__(self, snapshot: StationSnapshot | None = None) -> None:
        self._snapshot = snapshot or make_snapshot()
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self.calls: list[tuple[Any, ...]] = []
        self._called = asyncio.Event()
        self.fail_with: BaseException | None = None  # raised by the next command
        self.release_decision = Decision(reason=Reason.MAINTENANCE, bay="1", vehicle="ami-1")

    # -- test side -----------------------------------------------------------

    def set_snapshot(self, snapshot: StationSnapshot) -> None:
        self._snapshot = snapshot

    def update(self, **changes: Any) -> None:
        self._snapshot = dataclasses.replace(self._snapshot, **changes)

    def update_bay(self, bay: str, **changes: Any) -> None:
        bays = tuple(dataclasses.replace(b, **changes) if b.bay == bay else b for b in self._snapshot.bays)
        self._snapshot = dataclasses.replace(self._snapshot, bays=bays)

    def set_alerts(self, *alerts: Alert) -> None:
        self.update(alerts=tuple(alerts))

    def emit(self, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            listener(event)

    @property
    def listener_count(self) -> int:
        return len(self._listeners)

    async def wait_for_calls(self, count: int, timeout: float = 5.0) -> list[tuple[Any, ...]]:
        async def _wait() -> None:
            while len(self.calls) < count:
                self._called.clear()
                await self._called.wait()

        await asyncio.wait_for(_wait(), timeout)
        return self.calls

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        self._called.set()
        if self.fail_with is not None:
            err, self.fail_with = self.fail_with, None
            raise err

    # -- StationControl --------------------------------------------------------

    def snapshot(self) -> StationSnapshot:
        return self._snapshot

    def subscribe(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    async def set_charger(self, bay: str, on: bool, *, by: str) -> None:
        self._record("set_charger", bay, on, by)
        self.update_bay(bay, relay_on=on)

    async def maintenance_release(self, bay: str, *, by: str) -> Decision:
        self._record("maintenance_release", bay, by)
        return self.release_decision

    async def set_mode(self, mode: Mode, *, by: str) -> None:
        self._record("set_mode", mode, by)
        self.update(mode=mode)

    async def sync_now(self) -> None:
        self._record("sync_now")

    async def vehicle_locked(self, vehicle: str, *, source: str) -> Decision | None:
        self._record("vehicle_locked", vehicle, source)
        return None

    async def remote_unlock(
        self,
        *,
        request_id: str,
        vehicle: str | None,
        reservation_id: str | None = None,
        member_id: str | None = None,
    ) -> Decision:
        self._record("remote_unlock", request_id, vehicle, reservation_id, member_id)
        return Decision(reason=Reason.NO_RESERVATION)
