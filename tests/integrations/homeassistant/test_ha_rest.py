"""Home Assistant over REST (homeassistant-api) against a fake Home Assistant
on loopback: notifications, release actuator, lock watcher, error mapping."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from integrations.homeassistant import (
    HomeAssistantClient,
    HomeAssistantLockWatcher,
    HomeAssistantNotifier,
    HomeAssistantReleaseActuator,
)
from station.clock import SystemClock
from station.config import HomeAssistantSection, ReleaseSection
from station.errors import (
    ConfigError,
    PermanentIntegrationError,
    TransientIntegrationError,
)
from station.model import Alert
from tests.integrations.fake_station import FakeStation
from tests.integrations.homeassistant.fake_ha import TOKEN, FakeHomeAssistant
from tests.peers.mosquitto import free_port

REPO = Path(__file__).resolve().parents[3]
NOT_PLUGGED = Alert(key="vehicle_not_plugged:1", title="Vehicle not plugged", message="ami-1 returned at bay 1 draws no power")
PLUG_FAULT = Alert(key="plug_fault:1", title="Plug fault", message="bay 1 plug unreachable", severity="error")


async def eventually(predicate, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


# -- client and error mapping ----------------------------------------------------


async def test_client_reads_states_and_calls_services(fake_ha: FakeHomeAssistant, client: HomeAssistantClient) -> None:
    fake_ha.states["lock.ami_1"] = "locked"
    assert await client.get_state("lock.ami_1") == "locked"
    await client.call_service("lock", "unlock", entity_id="lock.ami_1")
    assert fake_ha.states["lock.ami_1"] == "unlocked"
    assert fake_ha.calls == [("lock", "unlock", {"entity_id": "lock.ami_1"})]
    assert client.api_url.endswith("/api")


async def test_errors_are_transient_or_permanent(fake_ha: FakeHomeAssistant, ha_url: str, client: HomeAssistantClient) -> None:
    bad = HomeAssistantClient(ha_url, "wrong-token", timeout_s=2.0)
    with pytest.raises(PermanentIntegrationError, match="refused the token"):
        await bad.get_state("lock.ami_1")
    with pytest.raises(PermanentIntegrationError, match="not found"):
        await client.get_state("lock.nope")
    with pytest.raises(PermanentIntegrationError, match="rejected"):
        await client.call_service("lock", "unlock", entity_id="lock.nope")
    fake_ha.fail_status = 500
    with pytest.raises(TransientIntegrationError):
        await client.call_service("persistent_notification", "create", notification_id="x", message="m")
    fake_ha.fail_status = None
    await client.call_service("persistent_notification", "create", notification_id="x", message="m")  # reopens
    gone = HomeAssistantClient(f"http://127.0.0.1:{free_port()}", TOKEN, timeout_s=1.0)
    with pytest.raises(TransientIntegrationError):
        await gone.call_service("lock", "unlock", entity_id="lock.ami_1")
    for c in (bad, gone):
        await c.close()


def test_homeassistant_api_is_imported_lazily() -> None:
    code = (
        "import sys, integrations.homeassistant as h; "
        "h.HomeAssistantClient('http://ha:8123', 't'); "
        "assert 'homeassistant_api' not in sys.modules and 'niquests' not in sys.modules"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env, timeout=30)


# -- release actuator -----------------------------------------------------------


async def test_release_actuator_unlocks_a_lock_or_turns_on_a_switch(fake_ha: FakeHomeAssistant, client: HomeAssistantClient) -> None:
    fake_ha.states.update({"lock.ami_1": "locked", "switch.ami_2_box": "off"})
    await HomeAssistantReleaseActuator.from_config(client, ReleaseSection(kind="homeassistant", entity_id="lock.ami_1")).release()
    await HomeAssistantReleaseActuator(client, "switch.ami_2_box").release()
    await HomeAssistantReleaseActuator(client, "button.ami_3_open").release()
    assert fake_ha.states == {"lock.ami_1": "unlocked", "switch.ami_2_box": "on"}
    assert [c[:2] for c in fake_ha.calls] == [("lock", "unlock"), ("switch", "turn_on"), ("button", "press")]
    for bad in ("light.kitchen", "lock", ""):
        with pytest.raises(ConfigError):
            HomeAssistantReleaseActuator(client, bad)
    with pytest.raises(ConfigError):
        HomeAssistantReleaseActuator.from_config(client, ReleaseSection(kind="homeassistant"))


async def test_release_actuator_reports_failures(fake_ha: FakeHomeAssistant, client: HomeAssistantClient) -> None:
    fake_ha.states["lock.ami_1"] = "locked"
    fake_ha.fail_status = 502
    with pytest.raises(TransientIntegrationError):
        await HomeAssistantReleaseActuator(client, "lock.ami_1").release()


# -- notifications ----------------------------------------------------------------


def notifier(client: HomeAssistantClient, station: FakeStation, **kwargs: object) -> HomeAssistantNotifier:
    return HomeAssistantNotifier(client, station, SystemClock(), "hede", **kwargs)  # type: ignore[arg-type]


async def test_alerts_become_notifications_and_are_dismissed(
    fake_ha: FakeHomeAssistant, client: HomeAssistantClient, station: FakeStation
) -> None:
    n = notifier(client, station)
    station.set_alerts(NOT_PLUGGED, Alert(key="roster:info", title="Roster applied", message="v43", severity="info"))
    await n.sync_once()
    assert fake_ha.notifications == {
        "borne_hede_vehicle_not_plugged_1": {
            "notification_id": "borne_hede_vehicle_not_plugged_1",
            "title": "Borne Hédé: Vehicle not plugged",
            "message": "ami-1 returned at bay 1 draws no power",
        }
    }
    await n.sync_once()  # nothing changed: nothing sent
    assert len(fake_ha.calls) == 1
    station.set_alerts(NOT_PLUGGED, PLUG_FAULT)
    await n.sync_once()
    assert set(fake_ha.notifications) == {"borne_hede_vehicle_not_plugged_1", "borne_hede_plug_fault_1"}
    station.set_alerts(PLUG_FAULT)
    await n.sync_once()
    assert set(fake_ha.notifications) == {"borne_hede_plug_fault_1"}
    assert fake_ha.calls[-1] == ("persistent_notification", "dismiss", {"notification_id": "borne_hede_vehicle_not_plugged_1"})


async def test_notifications_are_retried_after_home_assistant_was_down(
    fake_ha: FakeHomeAssistant, client: HomeAssistantClient, station: FakeStation
) -> None:
    n = notifier(client, station)
    station.set_alerts(PLUG_FAULT)
    fake_ha.fail_status = 503
    with pytest.raises(TransientIntegrationError):
        await n.sync_once()
    fake_ha.fail_status = None
    await n.sync_once()
    assert set(fake_ha.notifications) == {"borne_hede_plug_fault_1"}


async def test_notifier_runs_on_journal_events(
    fake_ha: FakeHomeAssistant, client: HomeAssistantClient, station: FakeStation, caplog: pytest.LogCaptureFixture
) -> None:
    n = notifier(client, station, interval_s=3600)
    fake_ha.fail_status = 500
    task = asyncio.create_task(n.run())
    try:
        await eventually(lambda: station.listener_count == 1)
        station.set_alerts(NOT_PLUGGED)
        station.emit({"type": "vehicle.not_plugged", "bay": "1"})  # HA still down: logged, kept for later
        await asyncio.sleep(0.2)
        fake_ha.fail_status = None
        station.emit({"type": "charge.started", "bay": "1"})
        await eventually(lambda: "borne_hede_vehicle_not_plugged_1" in fake_ha.notifications)
        station.set_alerts()
        station.emit({"type": "charge.started", "bay": "1"})
        await eventually(lambda: not fake_ha.notifications)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert station.listener_count == 0
    assert caplog.text.count("home assistant notifications:") == 1  # first failure WARNING, then DEBUG


async def test_notifier_stops_on_a_refused_token(ha_url: str, station: FakeStation) -> None:
    n = notifier(HomeAssistantClient(ha_url, "revoked"), station)
    station.set_alerts(PLUG_FAULT)
    with pytest.raises(PermanentIntegrationError):
        await asyncio.wait_for(n.run(), 5)
    assert station.listener_count == 0


# -- lock watcher ---------------------------------------------------------------------


async def test_lock_watcher_ends_the_trip_when_the_car_locks(
    fake_ha: FakeHomeAssistant, client: HomeAssistantClient, station: FakeStation
) -> None:
    fake_ha.states.update({"lock.ami_1": "locked", "lock.ami_2": "unlocked"})
    watcher = HomeAssistantLockWatcher(client, station, SystemClock(), {"lock.ami_1": "ami-1", "lock.ami_2": "ami-2"})
    await watcher.poll_once()  # baseline: a car found locked at start ends nothing
    assert station.calls == []
    fake_ha.states["lock.ami_2"] = "locked"
    await watcher.poll_once()
    assert station.calls == [("vehicle_locked", "ami-2", "homeassistant:lock.ami_2")]
    await watcher.poll_once()  # still locked: once only
    fake_ha.states["lock.ami_1"] = "unlocked"
    await watcher.poll_once()
    fake_ha.states["lock.ami_1"] = "unavailable"  # the car's box drops off the network...
    await watcher.poll_once()
    fake_ha.states["lock.ami_1"] = "locked"  # ...and comes back locked
    await watcher.poll_once()
    assert station.calls[-1] == ("vehicle_locked", "ami-1", "homeassistant:lock.ami_1")
    assert len(station.calls) == 2


async def test_lock_watcher_survives_home_assistant_outages(
    fake_ha: FakeHomeAssistant, client: HomeAssistantClient, station: FakeStation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="integrations.homeassistant")
    fake_ha.states["lock.ami_1"] = "unlocked"
    watcher = HomeAssistantLockWatcher(client, station, SystemClock(), {"lock.ami_1": "ami-1"}, interval_s=0.02)
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.sleep(0.1)
        fake_ha.fail_status = 500
        await asyncio.sleep(0.1)
        fake_ha.states["lock.ami_1"] = "locked"
        fake_ha.fail_status = None
        await station.wait_for_calls(1, timeout=3)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert station.calls == [("vehicle_locked", "ami-1", "homeassistant:lock.ami_1")]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "lock.ami_1" in r.getMessage()]
    assert len(warnings) == 1


async def test_lock_watcher_stops_on_an_unknown_entity(client: HomeAssistantClient, station: FakeStation) -> None:
    watcher = HomeAssistantLockWatcher(client, station, SystemClock(), {"lock.typo": "ami-1"})
    with pytest.raises(PermanentIntegrationError):
        await asyncio.wait_for(watcher.run(), 5)


def test_client_from_config() -> None:
    section = HomeAssistantSection(url="http://homeassistant.local:8123/", token="abc")
    assert HomeAssistantClient.from_config(section).api_url == "http://homeassistant.local:8123/api"
