"""Shared fixtures: a manual clock, a station on simulated devices, and a
guard that fails any test leaving an asyncio task running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from integrations.simulated import SimulatedPlug, SimulatedReader, SimulatedRelease
from station.bootstrap import Devices, build_station
from station.clock import ManualClock
from station.config import Config
from station.demo import demo_config, reservations_document, roster_document
from station.service import Station


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every asyncio test gets the lingering-task guard."""
    for item in items:
        if item.get_closest_marker("asyncio") is not None and "verify_no_lingering_tasks" not in item.fixturenames:
            item.fixturenames.insert(0, "verify_no_lingering_tasks")  # type: ignore[attr-defined]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--plug", default=None, help="run hardware tests against a real Modbus TCP plug HOST[:PORT]")
    parser.addoption("--reader", default=None, help="run hardware tests against a real NFC reader (nfcpy device)")
    parser.addoption("--crash-kills", type=int, default=None, help="SIGKILLs in the crash test (default 200; 60 in CI)")


@pytest_asyncio.fixture
async def verify_no_lingering_tasks() -> AsyncIterator[None]:
    before = set(asyncio.all_tasks())
    yield
    await asyncio.sleep(0)
    after = {t for t in asyncio.all_tasks() if not t.done()} - before - {asyncio.current_task()}
    if after:
        for t in after:
            t.cancel()
        await asyncio.gather(*after, return_exceptions=True)
        pytest.fail(f"tasks left running: {sorted(t.get_name() for t in after)}")


T0 = datetime(2026, 6, 1, 7, 0, tzinfo=UTC)


@dataclass(slots=True)
class Rig:
    """A station on simulated devices and a manual clock."""

    station: Station
    clock: ManualClock
    config: Config
    plugs: dict[str, SimulatedPlug]
    releases: dict[str, SimulatedRelease]
    reader: SimulatedReader
    events: list[dict]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def last(self, type_: str) -> dict | None:
        return next((e for e in reversed(self.events) if e["type"] == type_), None)


def make_rig(data_dir: Path, clock: ManualClock | None = None, *, boot: str = "boot-1", **config_overrides: object) -> Rig:
    clock = clock or ManualClock(T0)
    config = demo_config(data_dir, plug={"transport": "simulated", "poll_interval_s": 5.0})
    if config_overrides:
        config = config.model_copy(update=config_overrides)
    plugs = {b.id: SimulatedPlug(clock) for b in config.bays}
    releases = {b.id: SimulatedRelease() for b in config.bays}
    reader = SimulatedReader()
    station = build_station(config, clock=clock, boot=boot,
                            devices=Devices(plugs=dict(plugs), releases=dict(releases), reader=reader))
    events: list[dict] = []
    station.subscribe(events.append)
    return Rig(station=station, clock=clock, config=config, plugs=plugs, releases=releases, reader=reader, events=events)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest_asyncio.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Rig]:
    r = make_rig(tmp_path / "data", clock)
    await r.station.apply_document(roster_document(clock.now()), expected_type="roster")
    await r.station.apply_document(reservations_document(clock.now()), expected_type="reservations")
    yield r
    r.station.store.close()
    r.station.roster.close()
