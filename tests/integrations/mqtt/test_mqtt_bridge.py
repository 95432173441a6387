"""The bridge against a real mosquitto: discovery, states, commands, taps."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiomqtt
import pytest

from integrations.mqtt import LinkState
from station.errors import TransientIntegrationError
from station.model import Mode
from tests.integrations.fake_station import FakeStation
from tests.integrations.mqtt.mqtt_helpers import (
    Watcher,
    make_bridge,
    running,
    until,
    until_connected,
)
from tests.peers.mosquitto import Mosquitto

S = "borne/hede"
BAY = f"{S}/bay/1"


async def publish(broker: Mosquitto, topic: str, payload: str, *, retain: bool = False) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.publish(topic, payload, qos=1, retain=retain)


async def test_connect_publishes_discovery_online_and_states(mosquitto: Mosquitto, station: FakeStation, watcher: Watcher) -> None:
    bridge = make_bridge(mosquitto, station)
    async with running(bridge):
        await watcher.wait_for(f"{S}/status", "online")
        await watcher.wait_for(f"{BAY}/energy/state", "321.125")
        configs = watcher.matching("homeassistant/+/borne_hede/+/config")
        assert len(configs) == len(bridge._entities) == 21
        assert all(m.retain is False for m in configs)  # live delivery; retained flag shows on late subscribers
        power = json.loads(watcher.payloads("homeassistant/sensor/borne_hede/1_power/config")[-1])
        assert power["state_topic"] == f"{BAY}/power/state"
        expected = {
            f"{S}/state/state": "ok",
            f"{S}/mode/state": "normal",
            f"{S}/problem/state": "OFF",
            f"{S}/roster_version/state": "42",
            f"{S}/roster_age/state": "2.0",  # applied 06:00, wall clock fixed at 08:00
            f"{S}/roster_expiry/state": "2026-06-08T08:00:00+00:00",
            f"{S}/journal_backlog/state": "20",
            f"{S}/last_sync/state": "2026-06-01T07:30:00+00:00",
            f"{S}/unknown_card_rate/state": "0.5",
            f"{S}/clock_trusted/state": "ON",
            f"{BAY}/state/state": "charging",
            f"{BAY}/vehicle_present/state": "ON",
            f"{BAY}/vehicle/state": "ami-1",
            f"{BAY}/charging/state": "ON",
            f"{BAY}/power/state": "1234.5",
            f"{BAY}/power/available": "online",
            f"{BAY}/energy/state": "321.125",
            f"{BAY}/energy/available": "online",
            f"{BAY}/charger/state": "ON",
            f"{BAY}/charger/available": "online",
            f"{BAY}/plug_reachable/state": "ON",
        }
        await watcher.wait_for(f"{BAY}/plug_reachable/state")
        assert {t: watcher.last(t) for t in expected} == expected

    # a late subscriber (Home Assistant after a restart) gets everything retained
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as late:
        await late.subscribe("homeassistant/#")
        await late.subscribe(f"{S}/#")
        seen: dict[str, aiomqtt.Message] = {}
        async with asyncio.timeout(3):
            async for m in late.messages:
                seen[m.topic.value] = m
                if len(seen) >= 21 + 1 + len(expected):
                    break
        assert all(m.retain for m in seen.values())
        assert seen[f"{S}/status"].payload == b"offline"  # the bridge was stopped cleanly


async def test_journal_events_publish_changes_only(mosquitto: Mosquitto, station: FakeStation, watcher: Watcher) -> None:
    bridge = make_bridge(mosquitto, station)
    async with running(bridge):
        await watcher.wait_for(f"{BAY}/plug_reachable/state")
        mark = watcher.mark()
        station.update_bay("1", power_w=3.0, state="complete")
        station.emit({"type": "charge.completed", "seq": 121, "bay": "1"})
        await watcher.wait_for(f"{BAY}/power/state", "3.0", after=mark)
        await watcher.wait_for(f"{BAY}/charging/state", "OFF", after=mark)
        await asyncio.sleep(0.1)
        changed = {m.topic.value for m in watcher.messages[mark:]}
        assert changed == {f"{BAY}/power/state", f"{BAY}/charging/state", f"{BAY}/state/state"}


async def test_unknown_energy_goes_unavailable_never_zero(mosquitto: Mosquitto, station: FakeStation, watcher: Watcher) -> None:
    bridge = make_bridge(mosquitto, station)
    async with running(bridge):
        await watcher.wait_for(f"{BAY}/energy/available", "online")
        mark = watcher.mark()
        station.update_bay("1", energy_kwh=None, power_w=None, relay_on=None, plug_reachable=False)
        station.emit({"type": "plug.fault", "bay": "1"})
        await watcher.wait_for(f"{BAY}/energy/available", "offline", after=mark)
        await watcher.wait_for(f"{BAY}/power/available", "offline", after=mark)
        await watcher.wait_for(f"{BAY}/charger/available", "offline", after=mark)
        await asyncio.sleep(0.1)
        assert watcher.payloads(f"{BAY}/energy/state") == ["321.125"]  # no 0, no "None"
        mark = watcher.mark()
        station.update_bay("1", energy_kwh=321.5, power_w=0.0, relay_on=False, plug_reachable=True)
        station.emit({"type": "plug.recovered", "bay": "1"})
        await watcher.wait_for(f"{BAY}/energy/state", "321.5", after=mark)
        await watcher.wait_for(f"{BAY}/energy/available", "online", after=mark)


async def test_unknown_values_are_published_as_none(mosquitto: Mosquitto, station: FakeStation, watcher: Watcher) -> None:
    station.update(last_sync=None, roster=None, state="something-new")
    station.update_bay("1", vehicle=None, state="released")
    async with running(make_bridge(mosquitto, station)):
        await watcher.wait_for(f"{S}/last_sync/state", "None")
        await watcher.wait_for(f"{S}/roster_age/state", "None")
        await watcher.wait_for(f"{S}/state/state", "None")  # not one of the enum's options
        await watcher.wait_for(f"{BAY}/vehicle/state", "None")
        await watcher.wait_for(f"{BAY}/vehicle_present/state", "OFF")


async def test_commands_round_trip(mosquitto: Mosquitto, station: FakeStation, watcher: Watcher) -> None:
    bridge = make_bridge(mosquitto, station)
    async with running(bridge):
        await watcher.wait_for(f"{BAY}/charger/state", "ON")
        await publish(mosquitto, f"{BAY}/charger/set", "OFF")
        await watcher.wait_for(f"{BAY}/charger/state", "OFF")  # state follows the station
        await publish(mosquitto, f"{BAY}/release/set", "PRESS")
        await publish(mosquitto, f"{S}/mode/set", "maintenance")
        await watcher.wait_for(f"{S}/mode/state", "maintenance")
        await publish(mosquitto, f"{S}/sync_now/set", "PRESS")
        calls = await station.wait_for_calls(4)
        assert calls == [
            ("set_charger", "1", False, "homeassistant"),
            ("maintenance_release", "1", "homeassistant"),
            ("set_mode", Mode.MAINTENANCE, "homeassistant"),
            ("sync_now",),
        ]


async def test_bad_commands_are_logged_and_ignored(
    mosquitto: Mosquitto, station: FakeStation, watcher: Watcher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="integrations.mqtt")
    # a retained unlock on the broker (someone published with retain) is replayed on
    # subscribe: it must not unlock the car on every reconnect
    await publish(mosquitto, f"{BAY}/release/set", "PRESS", retain=True)
    bridge = make_bridge(mosquitto, station)
    async with running(bridge) as task:
        await watcher.wait_for(f"{S}/status", "online")
        for topic, payload in [
            (f"{BAY}/charger/set", "MAYBE"),
            (f"{BAY}/charger/set", ""),
            (f"{BAY}/release/set", "please"),
            (f"{S}/mode/set", "party"),
            (f"{S}/sync_now/set", "\xff\xfe"),
            (f"{S}/bay/9/charger/set", "ON"),  # no such bay: not subscribed
        ]:
            await publish(mosquitto, topic, payload)
        station.fail_with = TransientIntegrationError("plug unreachable")
        await publish(mosquitto, f"{BAY}/charger/set", "ON")
        await publish(mosquitto, f"{S}/mode/set", "out_of_service")
        calls = await station.wait_for_calls(2)
        assert calls == [("set_charger", "1", True, "homeassistant"), ("set_mode", Mode.OUT_OF_SERVICE, "homeassistant")]
        assert not task.done() and bridge.state is LinkState.CONNECTED
        text = caplog.text
        assert text.count("bad command payload") == 5
        assert "ignoring retained command" in text
        assert "plug unreachable" in text
        await publish(mosquitto, f"{BAY}/release/set", "", retain=True)  # clear it for the broker's sake


async def test_taps_become_events_without_personal_data(mosquitto: Mosquitto, station: FakeStation, watcher: Watcher) -> None:
    async with running(make_bridge(mosquitto, station)):
        await watcher.wait_for(f"{S}/status", "online")
        await until(lambda: station.listener_count == 1)
        mark = watcher.mark()
        secret = {"card_ref": "0123456789abcdef0123456789abcdef", "uid": "04a1b2c3d4e5f6", "reason": "reservation"}
        station.emit({"type": "card.tapped", "seq": 1, "bay": "1", "vehicle": "ami-1", "member_id": "m-7f3a", "data": secret})
        station.emit({"type": "card.tapped", "seq": 2, "data": {"reason": "unknown_card", "uid": "04ffee", "card_ref": "ffff"}})
        first = await watcher.wait_for(f"{S}/taps/state", after=mark)
        await watcher.wait_for(f"{S}/taps/state", lambda p: "refused" in p, after=mark)
        events = [json.loads(p) for p in watcher.payloads(f"{S}/taps/state")]
        assert events == [
            {"event_type": "allowed", "reason": "reservation", "bay": "1", "vehicle": "ami-1", "member_id": "m-7f3a"},
            {"event_type": "refused", "reason": "unknown_card"},
        ]
        assert first.retain is False
        everything = " ".join(m.payload.decode() for m in watcher.messages if isinstance(m.payload, bytes))
        assert "0123456789abcdef" not in everything and "04a1b2" not in everything and "04ffee" not in everything


async def test_the_listener_never_blocks_the_tap_path(mosquitto: Mosquitto, station: FakeStation) -> None:
    mosquitto.kill()  # broker away: nothing may pile up or wait
    bridge = make_bridge(mosquitto, station)
    async with running(bridge):
        await until(lambda: station.listener_count == 1)
        event = {"type": "card.tapped", "data": {"reason": "unknown_card"}}
        started = time.perf_counter()
        for _ in range(20_000):
            station.emit(event)
        elapsed = time.perf_counter() - started
        assert elapsed < 0.5, f"20k listener calls took {elapsed:.3f}s"
        assert len(bridge._taps) == 0  # not connected: taps are not kept for later
        assert bridge.state in (LinkState.CONNECTING, LinkState.BACKING_OFF)
        assert len(bridge._sent) == 0


async def test_mqtt_release_actuator(mosquitto: Mosquitto, station: FakeStation, watcher: Watcher) -> None:
    from station.config import ReleaseSection

    bridge = make_bridge(mosquitto, station)
    actuator = bridge.release_actuator(ReleaseSection(kind="mqtt", topic="cars/ami-1/cmd", payload="UNLOCK"))
    with pytest.raises(TransientIntegrationError):
        await actuator.release()  # not connected yet: fail fast, never queue an unlock
    async with running(bridge):
        await until_connected(bridge)
        await actuator.release()
        message = await watcher.wait_for("cars/ami-1/cmd", "UNLOCK")
        assert message.retain is False and message.qos == 1
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as late:
        await late.subscribe("cars/#")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await anext(aiter(late.messages))  # nothing retained


async def test_run_unsubscribes_and_stops_cleanly(mosquitto: Mosquitto, station: FakeStation) -> None:
    bridge = make_bridge(mosquitto, station)
    async with running(bridge):
        await until_connected(bridge)
        assert station.listener_count == 1
    assert station.listener_count == 0
    assert not bridge.connected
