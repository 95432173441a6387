"""End to end: the real station core (``build_station`` + ``run_station``)
with real peers on loopback: a pymodbus plug simulator over TCP, nfcpy's udp
reader against a card emulator, and a mosquitto broker.

Every station here is built from a config (``station.demo.demo_config``), so
bootstrap makes the real ``ModbusPlug``, ``NfcReader`` and ``MqttBridge``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from integrations.modbus.simulator import PlugSimulator
from integrations.nfc.emulator import EmulatedCard, TagEmulator
from station.bootstrap import Devices, build_station, run_station
from station.config import Config
from station.credentials import card_ref, encode_signed_card
from station.demo import (
    CARDS,
    DEMO_CARD_KEY,
    DEMO_ISSUER_ID,
    DEMO_KEY_ID,
    UNKNOWN,
    demo_config,
    demo_key,
    reservations_document,
    roster_document,
)
from station.documents import sign
from station.model import CardPresented
from station.service import Station

pytestmark = pytest.mark.timeout(60)


# -- ports and waiting ------------------------------------------------------------------


def free_tcp_pair() -> int:
    """A loopback TCP port P such that P and P + 1 are both free (bay 2's plug
    is on P + 1 in the demo config)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no pair of free loopback ports")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def until(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        await asyncio.sleep(step)


# -- the rig ------------------------------------------------------------------------------


def make_config(data_dir: Path, plug_port: int, *, reader: str = "simulated", mqtt: str | None = None,
                **policy: Any) -> Config:
    config = demo_config(
        data_dir, port=0, mqtt=mqtt, reader=reader,
        plug={"transport": "tcp", "host": "127.0.0.1", "port": plug_port, "profile": "simulator",
              "poll_interval_s": 0.2, "timeout_s": 0.3},
    )
    # seconds, not minutes: a charge is complete after ~2 s below standby
    changes = {"complete_after_min": 0.03, **policy}
    return config.model_copy(update={"policy": config.policy.model_copy(update=changes)})


@dataclass
class Running:
    station: Station
    config: Config
    task: asyncio.Task[None]
    events: list[dict[str, Any]] = field(default_factory=list)

    def of(self, type_: str, **match: Any) -> list[dict[str, Any]]:
        out = []
        for e in self.events:
            if e["type"] != type_:
                continue
            data = e.get("data") or {}
            if all(e.get(k) == v or data.get(k) == v for k, v in match.items()):
                out.append(e)
        return out

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    async def wait(self, type_: str, timeout: float = 10.0, count: int = 1, **match: Any) -> dict[str, Any]:
        found = await until(lambda: len(self.of(type_, **match)) >= count and self.of(type_, **match),
                            timeout, f"{count} x {type_} {match or ''}; journal so far: {self.types()}")
        return found[count - 1]

    async def stop(self) -> None:
        if not self.task.done():
            self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@contextlib.asynccontextmanager
async def station_running(config: Config, *, integrations: bool = False,
                          documents: bool = True) -> AsyncIterator[Running]:
    station = build_station(config, devices=Devices())
    run = Running(station=station, config=config, task=None)  # type: ignore[arg-type]
    station.subscribe(run.events.append)
    if documents:
        now = station.clock.now()
        if station.roster.info is None:
            await station.apply_document(roster_document(now), expected_type="roster")
        if station.store.document("reservations") is None:
            await station.apply_document(reservations_document(now), expected_type="reservations")
    run.task = asyncio.create_task(run_station(station, config, integrations=integrations), name="station-under-test")
    try:
        yield run
    finally:
        await run.stop()


@contextlib.asynccontextmanager
async def plug_simulators(port: int, *, speed: float, soc: float = 0.2) -> AsyncIterator[list[PlugSimulator]]:
    """Bay 1's plug on ``port`` (car plugged in at ``soc``), bay 2's on port + 1."""
    sims = [PlugSimulator(port=port, speed=speed, tick_s=0.1), PlugSimulator(port=port + 1, speed=speed, tick_s=0.1)]
    sims[0].plug_in(soc=soc)
    for sim in sims:
        await sim.start()
    try:
        yield sims
    finally:
        for sim in sims:
            await sim.stop()


def uid(name: str) -> bytes:
    return bytes.fromhex(CARDS[name])


async def take_and_return(run: Running, sim: PlugSimulator) -> None:
    """Alice takes ami-1 (her reservation) and brings it back: the car's lock signal."""
    decision = await run.station.on_card(CardPresented(uid=uid("alice")))
    assert decision is not None and decision.allowed, decision
    assert decision.vehicle == "ami-1" and decision.bay == "1"
    await until(lambda: not sim.state.relay_on, 3, "relay off after the release")
    ended = await run.station.vehicle_locked("ami-1", source="test")
    assert ended is not None and ended.reason.value == "trip_ended", ended


# -- 1. Modbus (issue 3) -------------------------------------------------------------------


async def test_return_charges_to_completion_over_modbus(tmp_path: Path) -> None:
    port = free_tcp_pair()
    async with plug_simulators(port, speed=1200, soc=0.95) as (sim, _), \
            station_running(make_config(tmp_path / "data", port)) as run:
        await take_and_return(run, sim)
        assert sim.state.relay_on, "the return switches the plug on"
        started = await run.wait("charge.started", timeout=5)
        assert started["bay"] == "1" and started["data"]["power_w"] > 100
        completed = await run.wait("charge.completed", timeout=15)
        assert completed["data"]["reason"] == "complete"
        assert completed["data"]["wh"] > 0
        await until(lambda: not sim.state.relay_on, 3, "plug off after completion")
        assert run.station.bays["1"].session.state.value == "complete"
        assert not run.of("plug.fault") and not run.of("charge.fault")


async def test_plug_server_lost_mid_charge_then_back(tmp_path: Path) -> None:
    port = free_tcp_pair()
    async with plug_simulators(port, speed=60, soc=0.2) as (sim, _), \
            station_running(make_config(tmp_path / "data", port)) as run:
        await take_and_return(run, sim)
        await run.wait("charge.started", timeout=5)

        await sim.stop()
        fault = await run.wait("plug.fault", timeout=5, bay="1")
        assert fault["data"]["kind"] == "unreachable"
        snap = run.station.snapshot()
        bay = next(b for b in snap.bays if b.bay == "1")
        assert bay.state == "fault" and not bay.plug_reachable and bay.relay_on is None
        assert any(a.key == "plug_fault_1" for a in snap.alerts)
        assert snap.state == "degraded"
        await asyncio.sleep(3)  # several failed polls, backing off
        assert len(run.of("plug.fault", bay="1")) == 1, "journaled once, not per failed poll"

        # The device comes back power-cycled: relay open. The journal says charging.
        sim.car.relay_on = False
        await sim.start()
        loop = asyncio.get_running_loop()
        back = loop.time()
        await run.wait("plug.recovered", timeout=10, bay="1")
        await until(lambda: sim.state.relay_on, 10 - (loop.time() - back), "relay driven back on")
        assert loop.time() - back <= 10
        assert len(run.of("plug.recovered", bay="1")) == 1
        assert len(run.of("plug.fault", bay="1")) == 1
        snap = run.station.snapshot()
        assert not any(a.key == "plug_fault_1" for a in snap.alerts)


async def test_overcurrent_is_a_charge_fault_and_opens_the_relay(tmp_path: Path) -> None:
    port = free_tcp_pair()
    async with plug_simulators(port, speed=60, soc=0.2) as (sim, _), \
            station_running(make_config(tmp_path / "data", port)) as run:
        await take_and_return(run, sim)
        await run.wait("charge.started", timeout=5)
        sim.set_fault("overcurrent")
        fault = await run.wait("charge.fault", timeout=5)
        assert fault["bay"] == "1" and fault["data"]["kind"] == "overcurrent"
        assert fault["data"]["current_a"] > 10
        await until(lambda: not sim.state.relay_on, 3, "relay off after over-current")
        # the interrupted session is closed as well
        assert run.of("charge.completed", reason="overcurrent")
        snap = run.station.snapshot()
        assert any(a.key == "charge_fault_1" for a in snap.alerts)
        await asyncio.sleep(1)
        assert len(run.of("charge.fault")) == 1 and not sim.state.relay_on


@contextlib.asynccontextmanager
async def stuck_relay(tmp_path: Path) -> AsyncIterator[tuple[Running, PlugSimulator]]:
    port = free_tcp_pair()
    async with plug_simulators(port, speed=60, soc=0.2) as (sim, _), \
            station_running(make_config(tmp_path / "data", port)) as run:
        await take_and_return(run, sim)
        await run.wait("charge.started", timeout=5)
        sim.set_fault("stuck_relay")
        await run.station.set_charger("1", False, by="test")
        assert sim.state.relay_on and sim.state.power_w > 1000
        yield run, sim


async def test_stuck_relay_is_a_plug_fault_of_kind_stuck_relay(tmp_path: Path) -> None:
    async with stuck_relay(tmp_path) as (run, _):
        fault = await run.wait("plug.fault", timeout=5, bay="1")
        assert fault["data"]["kind"] == "stuck_relay", fault["data"]


async def test_unswitchable_relay_does_not_flood_the_journal(tmp_path: Path) -> None:
    async with stuck_relay(tmp_path) as (run, _):
        await run.wait("plug.fault", timeout=5, bay="1")
        await asyncio.sleep(1.5)
        faults, recovered = run.of("plug.fault", bay="1"), run.of("plug.recovered", bay="1")
        assert len(faults) == 1 and len(recovered) == 0, f"{len(faults)} plug.fault, {len(recovered)} plug.recovered in 1.5 s"
        assert any(a.key in ("plug_fault_1", "charge_fault_1") for a in run.station.snapshot().alerts)


async def test_boot_drives_the_relay_to_what_the_journal_implies(tmp_path: Path) -> None:
    port = free_tcp_pair()
    data = tmp_path / "data"
    async with plug_simulators(port, speed=60, soc=0.2) as (sim, _):
        config = make_config(data, port)
        async with station_running(config) as run:
            await take_and_return(run, sim)
            await run.wait("charge.started", timeout=5)
            await run.stop()  # like SIGTERM: shutdown leaves the plug off
            assert not sim.state.relay_on, "shutdown switches the plug to its safe state"
            assert "station.stopped" in run.types()
        async with station_running(config) as again:
            assert again.station.bays["1"].session.state.value == "waiting_plug"
            await until(lambda: sim.state.relay_on, 5, "relay on again after the restart")
            await again.wait("charge.started", timeout=5)
            assert not again.of("trip.started"), "no new trip: the state came from the journal"
            # bay 2 was idle: its relay stays off
            assert not again.station.bays["2"].relay_on


# -- 2. NFC (issue 4) ----------------------------------------------------------------------

SIGNED_UID = bytes.fromhex("04A1B2C3D4E5F6")  # an NTAG21x (NXP, 7 bytes)


def signed_roster(now: Any) -> bytes:
    """The demo roster plus frank, whose card is a signed one at serial 3."""
    doc = json.loads(base64.b64decode(json.loads(roster_document(now))["payload"]))
    doc["version"] = 2
    doc["members"].append({
        "member_id": "m-frank", "status": "active",
        "valid_from": (now - timedelta(days=1)).isoformat(), "valid_until": (now + timedelta(days=30)).isoformat(),
        "cards": [{"ref": card_ref(DEMO_CARD_KEY.encode(), SIGNED_UID), "kind": "signed", "serial": 3}],
    })
    return sign(doc, demo_key("central"), DEMO_KEY_ID)


def signed_card(serial: int) -> EmulatedCard:
    ndef = encode_signed_card(demo_key("townhall"), DEMO_ISSUER_ID, "m-frank", serial, SIGNED_UID)
    return EmulatedCard(uid=SIGNED_UID, ndef=ndef)


async def present(emu: TagEmulator, card: EmulatedCard, hold_s: float = 0.2) -> None:
    read = await asyncio.to_thread(emu.hold, card, hold_s, until_read_s=5.0)
    assert read, f"the reader did not read card {card.uid.hex()}"


async def test_nfc_taps_through_the_real_reader(tmp_path: Path) -> None:
    port = free_tcp_pair()
    with TagEmulator(free_udp_port()) as emu:
        config = make_config(tmp_path / "data", port, reader=f"udp:127.0.0.1:{emu.port}")
        async with plug_simulators(port, speed=60) as (sim, _), station_running(config) as run:
            summary = await run.station.apply_document(signed_roster(run.station.clock.now()), expected_type="roster")
            assert summary.get("applied"), summary
            taps = lambda: run.of("card.tapped")  # noqa: E731

            # a UID card of the roster with a reservation: released
            await present(emu, EmulatedCard(uid=uid("alice")))
            tap = await run.wait("card.tapped", timeout=5)
            assert tap["member_id"] == "m-alice" and tap["data"]["decision"] == "allowed", tap
            await run.wait("trip.started", timeout=2)
            assert not sim.state.relay_on

            # the signed card at its roster serial: allowed (walk-up on ami-2)
            await present(emu, signed_card(3))
            signed_at = asyncio.get_running_loop().time()
            tap = await run.wait("card.tapped", timeout=5, count=2)
            assert tap["member_id"] == "m-frank" and tap["data"]["decision"] == "allowed", tap
            assert tap["vehicle"] == "ami-2"

            # an unknown card: refused
            await present(emu, EmulatedCard(uid=bytes.fromhex(UNKNOWN)))
            tap = await run.wait("card.tapped", timeout=5, count=3)
            assert tap["data"]["decision"] == "refused" and tap["data"]["reason"] == "unknown_card", tap

            # a bare UID copy of the signed card: refused (after the 3 s debounce
            # of that UID, else the station rightly ignores it as the same card)
            await asyncio.sleep(max(0.0, signed_at + 3.2 - asyncio.get_running_loop().time()))
            await present(emu, EmulatedCard(uid=SIGNED_UID))
            tap = await run.wait("card.tapped", timeout=5, count=4)
            assert tap["data"]["reason"] == "signed_card_required", tap
            assert tap["member_id"] == "m-frank"

            # a card held 5 s (longer than the 3 s debounce) is one tap
            await present(emu, EmulatedCard(uid=uid("dave")), hold_s=5.0)
            await run.wait("card.tapped", timeout=5, count=5)
            daves = [t for t in taps() if t["member_id"] == "m-dave"]
            assert len(daves) == 1 and len(taps()) == 5, daves
            assert daves[0]["data"]["reason"] == "member_suspended"

            # a genuine record at an older serial (a replaced card): revoked
            await present(emu, signed_card(2))
            tap = await run.wait("card.tapped", timeout=5, count=6)
            assert tap["data"]["reason"] == "card_revoked", tap
            await asyncio.sleep(0.5)
            assert len(taps()) == 6 and run.station.reader_fault is None
            # no card ref or UID in the journal's tap data
            for t in taps():
                text = json.dumps(t).lower()
                assert CARDS["alice"].lower() not in text and SIGNED_UID.hex() not in text


# -- 3. MQTT (issue 5) ---------------------------------------------------------------------

from tests.integrations.mqtt.mqtt_helpers import watching  # noqa: E402
from tests.peers.mosquitto import Mosquitto, mosquitto  # noqa: E402, F401  (fixture)


async def test_station_in_home_assistant_over_mqtt(tmp_path: Path, mosquitto: Mosquitto) -> None:  # noqa: F811
    port = free_tcp_pair()
    with TagEmulator(free_udp_port()) as emu:
        config = make_config(tmp_path / "data", port, reader=f"udp:127.0.0.1:{emu.port}", mqtt=mosquitto.url)
        async with watching(mosquitto) as w, plug_simulators(port, speed=60) as (sim, _):
            async with station_running(config, integrations=True) as run:
                await w.wait_for("borne/hede/status", "online", timeout=10)
                configs = {m.topic.value: json.loads(m.payload) for m in w.matching("homeassistant/+/+/+/config")}
                # retained: a client that subscribes later (Home Assistant restarting) gets them all
                async with watching(mosquitto, "homeassistant/#") as late:
                    await until(lambda: len(late.messages) >= len(configs), 3, "retained discovery configs")
                    assert {m.topic.value for m in late.messages} == set(configs)
                    assert all(m.retain for m in late.messages)
                async with watching(mosquitto, "borne/hede/status") as late:
                    assert (await late.wait_for("borne/hede/status", "online", timeout=3)).retain
                assert len(configs) >= 10
                assert all(c["device"]["identifiers"] == configs[next(iter(configs))]["device"]["identifiers"]
                           for c in configs.values()), "one device per station"
                charger = configs.get("homeassistant/switch/borne_hede/1_charger/config")
                assert charger is not None, sorted(configs)
                assert run.station.api_server is not None and await run.station.api_server.wait_ready() > 0

                # Home Assistant switches bay 1's charger on
                import aiomqtt

                async with aiomqtt.Client(mosquitto.host, mosquitto.port) as ha:
                    await ha.publish(charger["command_topic"], charger.get("payload_on", "ON"), qos=1)
                switched = await run.wait("charger.switched", timeout=5)
                assert switched["bay"] == "1" and switched["data"] == {"on": True, "by": "homeassistant"}
                await until(lambda: sim.state.relay_on, 3, "plug on")
                await w.wait_for(charger["state_topic"], charger.get("state_on", "ON"), timeout=5)

                # a tap: a state update and a tap event, no card ref or UID anywhere
                mark = w.mark()
                await present(emu, EmulatedCard(uid=uid("bob")))
                tapped = await run.wait("card.tapped", timeout=5)
                assert tapped["member_id"] == "m-bob"
                event = await w.wait_for("borne/hede/taps/state", timeout=5, after=mark)
                payload = json.loads(event.payload)
                assert payload["event_type"] == "allowed" and payload["member_id"] == "m-bob", payload
                # bob took ami-2 (walk-up): bay 2's vehicle goes away
                await w.wait_for("borne/hede/bay/2/vehicle_present/state", after=mark, timeout=5)
                assert len(w.messages) > mark + 1

            # cancelled: offline, retained
            await w.wait_for("borne/hede/status", "offline", timeout=5)
            secrets = set()
            for name in CARDS:
                secrets |= {CARDS[name].lower(), card_ref(DEMO_CARD_KEY.encode(), uid(name))}
            for m in w.messages:
                text = (m.payload.decode() if isinstance(m.payload, bytes | bytearray) else str(m.payload)).lower()
                leaked = [s for s in secrets if s in text or s in m.topic.value.lower()]
                assert not leaked, (m.topic.value, text)
