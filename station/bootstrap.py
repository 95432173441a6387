"""The composition root: the only place that knows the adapters.

``build_station`` turns a :class:`~station.config.Config` into a running
:class:`~station.service.Station` with its devices; ``run_station`` runs it
and its integrations under one supervisor until cancelled, then leaves the
plugs in their safe state and closes the journal.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from station.authorization import Policy
from station.bay import BayController
from station.charging import ChargeParams, ChargeSession, ChargeState
from station.clock import Clock, SystemClock
from station.config import BaySection, Config
from station.credentials import load_issuer_keys
from station.errors import ConfigError, IntegrationError, StorageError, TransientIntegrationError
from station.ports import CardReader, Plug, ReleaseActuator
from station.service import Station
from station.store.roster import RosterStore
from station.store.state import StateStore
from station.supervisor import Service, Supervisor, supervise
from station.tariff import Tariff
from station.taps import TapGate
from station.walltime import WallClock

_LOGGER = logging.getLogger(__name__)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return str(uuid.uuid4())


def ntp_synced() -> bool:
    """systemd-timesyncd (and chrony with the same hook) touch this file once synced."""
    return Path("/run/systemd/timesync/synchronized").exists()


def charge_params(config: Config) -> ChargeParams:
    p = config.policy
    return ChargeParams(threshold_w=p.charging_threshold_w, standby_w=p.standby_w,
                        complete_after_s=p.complete_after_min * 60, switch_off_when_complete=p.switch_off_when_complete,
                        overcurrent_a=p.overcurrent_a, plug_in_alert_s=p.plug_in_alert_min * 60)


def policy_of(config: Config) -> Policy:
    p = config.policy
    return Policy(early_grace=timedelta(minutes=p.early_grace_min), late_grace=timedelta(minutes=p.late_grace_min),
                  walk_up=p.walk_up, walk_up_horizon=timedelta(minutes=p.walk_up_horizon_min))


def make_plug(bay: BaySection, clock: Clock) -> Plug:
    if bay.plug.transport == "simulated":
        from integrations.simulated import SimulatedPlug

        return SimulatedPlug(clock)
    from integrations.modbus import ModbusPlug

    return ModbusPlug(bay.plug, plug_profile(bay), bay=bay.id)


def plug_profile(bay: BaySection) -> Any:
    """The bay's device profile; an error names the bay and the profile's key."""
    from integrations.modbus import load_profile

    try:
        return load_profile(bay.plug.profile)
    except ConfigError as err:
        raise ConfigError(f"bays[{bay.id}].plug.profile: {err}") from None


def check_devices(config: Config) -> list[str]:
    """What ``check-config`` can verify beyond the schema without touching a
    device: plug profiles load, card-issuer keys decode."""
    notes = []
    for bay in config.bays:
        if bay.plug.transport != "simulated":
            profile = plug_profile(bay)
            notes.append(f"bay {bay.id}: plug profile {bay.plug.profile} ({getattr(profile, 'description', '')})".rstrip(" ()"))
    load_issuer_keys(config.central.issuer_keys)
    return notes


class _BridgeSlot:
    """Forwards MQTT commands to the bridge, which can only be built once the
    station exists (it needs the station for its commands)."""

    def __init__(self) -> None:
        self.bridge: Any = None

    async def publish_command(self, topic: str, payload: str, *, qos: int = 1) -> None:
        if self.bridge is None:
            raise TransientIntegrationError("MQTT bridge not started")
        await self.bridge.publish_command(topic, payload, qos=qos)


@dataclass(slots=True)
class Shared:
    """Connections shared by several adapters, made once per station."""

    config: Config
    mqtt: _BridgeSlot = field(default_factory=_BridgeSlot)
    ha_client: Any = None

    def homeassistant(self) -> Any:
        if self.ha_client is None:
            from integrations.homeassistant import HomeAssistantClient

            if self.config.homeassistant is None:
                raise ConfigError("a bay's release.kind is homeassistant but the config has no homeassistant section")
            self.ha_client = HomeAssistantClient.from_config(self.config.homeassistant)
        return self.ha_client


def make_release(bay: BaySection, clock: Clock, shared: Shared) -> ReleaseActuator:
    kind = bay.release.kind
    if kind == "simulated":
        from integrations.simulated import SimulatedRelease

        return SimulatedRelease()
    if kind == "modbus_coil":
        from integrations.modbus import ModbusReleaseActuator

        return ModbusReleaseActuator(bay.release, clock=clock, bay=bay.id)
    if kind == "homeassistant":
        from integrations.homeassistant import HomeAssistantReleaseActuator

        return HomeAssistantReleaseActuator.from_config(shared.homeassistant(), bay.release)
    from integrations.mqtt import MqttReleaseActuator

    if shared.config.mqtt is None:
        raise ConfigError(f"bays[{bay.id}].release: kind mqtt needs an mqtt section")
    if not bay.release.topic:
        raise ConfigError(f"bays[{bay.id}].release: kind mqtt needs 'topic'")
    return MqttReleaseActuator(shared.mqtt, topic=bay.release.topic, payload=bay.release.payload)


def make_reader(config: Config, clock: Clock) -> CardReader:
    if config.reader.device == "simulated":
        from integrations.simulated import SimulatedReader

        return SimulatedReader()
    from integrations.nfc import NfcReader

    return NfcReader(config.reader, clock=clock)


@dataclass(slots=True)
class Devices:
    """Adapters handed to the station; tests and the demo pass their own."""

    plugs: dict[str, Plug] = field(default_factory=dict)
    releases: dict[str, ReleaseActuator] = field(default_factory=dict)
    reader: CardReader | None = None
    shared: Shared | None = None


def _keys(entries: list[Any]) -> dict[str, bytes]:
    return {k.key_id: base64.b64decode(k.public_key) for k in entries}


def prepare_data_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise StorageError(f"data_dir {path}: not usable: {err.strerror or err}") from None


def build_station(config: Config, *, clock: Clock | None = None, devices: Devices | None = None,
                  boot: str | None = None, ntp: Callable[[], bool] = ntp_synced, process_pool: Any = None) -> Station:
    base_clock = clock or SystemClock()
    wall = WallClock(base_clock, policy=config.station.trust_system_clock, ntp_synced=ntp)
    devices = devices or Devices()
    prepare_data_dir(config.data_dir)
    store = StateStore(config.data_dir / "station.db", station_id=config.station.id, boot_id=boot or boot_id(),
                       clock=wall, wall_trusted=lambda: wall.trusted)
    roster = RosterStore(config.data_dir)
    shared = devices.shared = devices.shared or Shared(config)
    saved = store.bays()
    params = charge_params(config)
    bays = []
    for section in config.bays:
        row = saved.get(section.id)
        session = ChargeSession(params=params)
        if row is not None:
            session.state = ChargeState(row.charge_state)
            session.lifetime_wh = row.lifetime_wh
            if session.state is ChargeState.FAULT:
                session.state = ChargeState.IDLE
            if session.state is ChargeState.CHARGING:
                session.state = ChargeState.WAITING  # a session cut by a restart: wait for power again
                session.alerted_not_plugged = True
        plug = devices.plugs.get(section.id) or make_plug(section, wall)
        release = devices.releases.get(section.id) or make_release(section, wall, shared)
        bays.append(BayController(
            bay=section.id, home_vehicle=section.vehicle, plug=plug, release=release, session=session, store=store,
            clock=wall, poll_interval=section.plug.poll_interval_s,
            vehicle=row.vehicle if row is not None else section.vehicle,
        ))
    reader = devices.reader if devices.reader is not None else make_reader(config, wall)
    gate = TapGate(config.reader.debounce_s, config.policy.unknown_card_limit_per_min, config.policy.lockout_s, wall)
    t = config.tariff
    station = Station(
        station_id=config.station.id, name=config.station.name, data_dir=config.data_dir, store=store, roster=roster,
        clock=wall, bays=bays, reader=reader, gate=gate, policy=policy_of(config),
        tariff=Tariff(free_minutes=t.free_minutes, step_minutes=t.step_minutes, step_cents=t.step_cents,
                      currency=t.currency),
        card_key=config.central.card_key.encode(),
        issuer_keys=load_issuer_keys(config.central.issuer_keys),
        document_keys=_keys(config.central.keys),
        roster_warning=timedelta(hours=config.policy.roster_expiry_warning_h),
        retention=timedelta(days=config.policy.journal_retention_days),
        process_pool=process_pool,
    )
    station.shared = shared
    return station


async def housekeeping(station: Station, clock: Clock) -> None:
    """Hourly: prune acknowledged events past retention; keep state fresh."""
    while True:
        await clock.sleep(3600)
        station.store.prune(station.retention)
        station.roster.refresh()


def integration_services(config: Config, station: Station, clock: Clock, shared: Shared) -> list[Service]:
    services: list[Service] = []
    from integrations.api import ApiServer

    api = ApiServer(station, config.api, version=station.snapshot().version)
    station.api_server = api
    services.append(Service(name="api", run=api.run))
    if config.mqtt is not None:
        from integrations.mqtt import MqttBridge

        bridge = MqttBridge(config.mqtt, station, clock, config.station.id)
        shared.mqtt.bridge = bridge
        services.append(Service(name="mqtt", run=bridge.run))
    if config.homeassistant is not None:
        from integrations.homeassistant import HomeAssistantLockWatcher, HomeAssistantNotifier

        client = shared.homeassistant()
        if config.homeassistant.notify:
            notifier = HomeAssistantNotifier(client, station, clock, config.station.id)
            services.append(Service(name="ha-notifier", run=notifier.run))
        locks = {b.release.lock_entity_id: b.vehicle for b in config.bays if b.release.lock_entity_id}
        if locks:
            watcher = HomeAssistantLockWatcher(client, station, clock, locks)
            services.append(Service(name="ha-locks", run=watcher.run))
    return services


async def run_station(station: Station, config: Config, *, extra: list[Service] | None = None,
                      integrations: bool = True, shared: Shared | None = None) -> None:
    clock = station.clock
    tune_allocator()
    supervisor = Supervisor(clock, on_failure=lambda name, err, n: _failed(station, name, err))
    services = [Service(name="reader", run=station.run_reader)]
    services += [Service(name=f"bay-{b.bay}", run=b.run) for b in station.bays.values()]
    services.append(Service(name="housekeeping", run=lambda: housekeeping(station, clock)))
    if integrations:
        services += integration_services(config, station, clock, shared or station.shared)
    services += extra or []
    # Large rosters are parsed and written in a worker process, so that taps never
    # wait behind a 200 MB JSON parse holding the interpreter (started on demand).
    if station._pool is None and station._pool_factory is None:
        station._pool_factory = _roster_worker
    try:
        await supervise(supervisor, services)
    finally:
        await shutdown(station)
        if station._pool is not None:
            station._pool.shutdown(wait=False, cancel_futures=True)
        ha = (shared or station.shared).ha_client
        if ha is not None:
            await ha.close()


def tune_allocator() -> None:
    """glibc keeps freed heap memory; the 8 MB bodies of a roster's parts would
    stay in the station's RSS after the apply. Buffers of 1 MB and more are
    mapped on their own and returned at once when freed."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_mmap_threshold = -3
        libc.mallopt(m_mmap_threshold, 1 << 20)
    except (OSError, AttributeError):
        pass


def _roster_worker() -> Any:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


def _failed(station: Station, name: str, err: BaseException) -> None:
    if name == "reader":
        station.reader_failed(err)


async def shutdown(station: Station) -> None:
    """Plugs to their safe state (off), journal the stop, close the files."""
    for bay in station.bays.values():
        try:
            await asyncio.wait_for(bay.plug.switch(False), timeout=3)
        except (IntegrationError, TimeoutError) as err:
            _LOGGER.warning("bay %s: could not switch the plug off at shutdown: %s", bay.bay, err)
        except Exception as err:  # noqa: BLE001 - shutdown must finish
            _LOGGER.warning("bay %s: plug off at shutdown failed: %s", bay.bay, err)
        try:
            await bay.plug.close()
        except Exception:  # noqa: BLE001
            pass
    try:
        with station.store.transaction() as tx:
            tx.append("station.stopped", data={"pid": os.getpid()})
            for bay in station.bays.values():
                bay.persist(tx)
    except StorageError as err:
        _LOGGER.warning("could not journal the stop: %s", err)
    station.store.close()
    station.roster.close()


# -- the demo ------------------------------------------------------------------------


async def run_scenario(data_dir: Path, out: Callable[[str], None] = print) -> bool:
    """Play the scripted pilot day on simulated devices and a manual clock."""
    import shutil
    from datetime import UTC, datetime

    from integrations.simulated import SimulatedPlug, SimulatedReader, SimulatedRelease
    from station.clock import ManualClock
    from station.demo import demo_config
    from station.scenario import Scenario

    folder = data_dir / "scenario"
    shutil.rmtree(folder, ignore_errors=True)
    clock = ManualClock(datetime(2026, 6, 1, 7, 0, tzinfo=UTC))
    config = demo_config(folder, plug={"transport": "simulated", "poll_interval_s": 5.0})
    plugs = {b.id: SimulatedPlug(clock) for b in config.bays}
    releases = {b.id: SimulatedRelease() for b in config.bays}
    reader = SimulatedReader()
    station = build_station(config, clock=clock, boot="scenario-boot",
                            devices=Devices(plugs=dict(plugs), releases=dict(releases), reader=reader))
    try:
        return await Scenario(station, clock, reader, plugs, releases, out=out).play()
    finally:
        station.store.close()
        station.roster.close()


def tap_card(reader: str, uid_hex: str, credential: str | None, *, hold_s: float = 0.5) -> int:
    from integrations.nfc.tap import tap

    return tap(reader, uid_hex, credential, hold_s=hold_s)


async def run_demo(args: Any) -> None:
    """``borne demo``: real pymodbus simulators on loopback, nfcpy's emulated
    reader, SQLite in a data folder, the API, MQTT if a broker is given."""
    import hashlib
    import secrets
    import shutil

    from integrations.modbus.simulator import PlugSimulator
    from station.demo import CARDS, UNKNOWN, demo_config, describe, reservations_document, roster_document

    data = Path(args.data)
    if args.fresh:
        shutil.rmtree(data, ignore_errors=True)
    token = args.token or secrets.token_urlsafe(18)
    plug = {"transport": "tcp", "host": "127.0.0.1", "port": args.plug_port, "profile": "simulator",
            "poll_interval_s": 1.0, "timeout_s": 1.0}
    config = demo_config(data.resolve(), port=args.port, token_sha256=hashlib.sha256(token.encode()).hexdigest(),
                         mqtt=args.mqtt, plug=plug, reader=f"udp:127.0.0.1:{args.reader_port}")
    simulators = [PlugSimulator(port=args.plug_port + i, speed=args.speed) for i in range(len(config.bays))]
    for sim in simulators:
        await sim.start()
        sim.plug_in(soc=0.4)
    try:
        station = build_station(config)
        station.subscribe(lambda e: (line := describe(e)) and print(f"{e['at'][11:19]} {line}", flush=True))
        now = station.clock.now()
        if (station.roster.info is None):
            await station.apply_document(roster_document(now), expected_type="roster")
        if station.store.document("reservations") is None:
            await station.apply_document(reservations_document(now), expected_type="reservations")
        print(f"borne demo: station {config.station.id} with {len(config.bays)} bays; data in {data}")
        print(f"  API      http://127.0.0.1:{args.port}/v1/status   token: {token}")
        print(f"  reader   nfcpy emulation on udp:127.0.0.1:{args.reader_port}")
        print(f"  plugs    Modbus TCP simulators on 127.0.0.1:{args.plug_port}..{args.plug_port + len(simulators) - 1}")
        print("  try      borne tap " + "   |   borne tap ".join([CARDS['alice'] + " (alice, reserved)",
                                                                     CARDS['bob'] + " (bob, walk-up)",
                                                                     UNKNOWN + " (unknown)"]))
        print("  stop     Ctrl-C", flush=True)
        await run_station(station, config)
    finally:
        for sim in simulators:
            await sim.stop()
