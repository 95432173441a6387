"""The station in Home Assistant, over MQTT (aiomqtt).

:class:`MqttBridge` keeps one connection to the broker and, on every connect
and whenever Home Assistant announces itself on ``<prefix>/status``, publishes
the discovery configs, ``online`` and every entity state. Afterwards it
publishes the states that changed, on every journal event and on a periodic
tick, and turns Home Assistant's commands into station commands.

The link is a small explicit state machine::

    CONNECTING --CONNACK--> CONNECTED --drop--> BACKING_OFF --delay--> CONNECTING
        \\-------------refused / unreachable---------^

with capped, jittered exponential back-off. The last will is ``offline``
(retained, QoS 1) on the status topic; a clean stop (cancel of :meth:`run`)
publishes ``offline`` itself, since a graceful DISCONNECT fires no will.

Nothing here may slow the station down: the journal listener only sets a flag
(and keeps a tap in a bounded deque); states are rendered from a fresh
snapshot when the publisher wakes up, so while the broker is away nothing
accumulates — on reconnect, the latest state of each entity is published.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import ssl
import threading
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from integrations.mqtt.backoff import Backoff
from integrations.mqtt.discovery import (
    OFFLINE,
    ONLINE,
    BoundEntity,
    DeviceInfo,
    bind_entities,
    discovery_message,
)
from integrations.mqtt.release import MqttReleaseActuator
from integrations.mqtt.states import StateRenderer, tap_payload
from integrations.mqtt.topics import Topics, parse_broker_url
from integrations.wake import wake
from station.clock import Clock
from station.config import MqttSection, ReleaseSection
from station.errors import (
    BorneError,
    ConfigError,
    PermanentIntegrationError,
    TransientIntegrationError,
)
from station.model import StationSnapshot
from station.ports import StationControl

log = logging.getLogger(__name__)

_AUTH_REFUSED = {4, 5, 134, 135}  # MQTT 3.1.1 / 5 CONNACK: bad credentials, not authorized
_BATCH = 50  # messages awaited together


class LinkState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKING_OFF = "backing_off"


class MqttBridge:
    """Publishes the station to Home Assistant and relays its commands.

    ``station`` is the core's :class:`~station.ports.StationControl`;
    ``clock`` the injected :class:`~station.clock.Clock`. ``state_interval_s``
    is the periodic refresh (power, roster age); ``backoff`` and
    ``timeout_s`` are tunable for tests.
    """

    def __init__(
        self,
        config: MqttSection,
        station: StationControl,
        clock: Clock,
        station_id: str,
        *,
        manufacturer: str = "borne",
        model: str = "borne car-sharing station",
        state_interval_s: float = 10.0,
        stable_after_s: float = 30.0,
        timeout_s: float = 10.0,
        command_queue: int = 16,
        backoff: Backoff | None = None,
    ) -> None:
        self._config = config
        self._broker = parse_broker_url(config.url, username=config.username, password=config.password)
        self._station = station
        self._clock = clock
        self._station_id = station_id
        self._manufacturer = manufacturer
        self._model = model
        self._state_interval_s = state_interval_s
        self._stable_after_s = stable_after_s
        self._timeout_s = timeout_s
        self._backoff = backoff or Backoff(initial=1.0, cap=60.0)
        self.topics = Topics.for_station(
            base_topic=config.base_topic, discovery_prefix=config.discovery_prefix, station_id=station_id
        )
        self.state = LinkState.CONNECTING
        self.connects = 0  # successful connections so far (for status and tests)
        self._client: aiomqtt.Client | None = None
        self._entities: tuple[BoundEntity, ...] = ()
        self._commands: dict[str, BoundEntity] = {}
        self._sent: dict[str, str] = {}  # topic -> last payload the broker acknowledged
        self._taps: collections.deque[dict[str, Any]] = collections.deque(maxlen=32)
        self._full_publish = True
        self._wake = asyncio.Event()
        self._command_queue: asyncio.Queue[tuple[BoundEntity, str]] = asyncio.Queue(maxsize=command_queue)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._failures = 0
        self._renderer = StateRenderer(self.topics, station_id)

    # -- public ------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def run(self) -> None:
        """Live until cancelled; raises PermanentIntegrationError when the
        broker refuses the credentials."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        unsubscribe = self._station.subscribe(self._on_journal_event)
        workers = [
            asyncio.create_task(self._command_worker(), name="mqtt-commands"),
            asyncio.create_task(self._ticker(), name="mqtt-ticker"),
        ]
        try:
            await self._link()
        finally:
            unsubscribe()
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def publish_command(self, topic: str, payload: str, *, qos: int = 1) -> None:
        """Publish a one-off command (never retained) on the bridge's
        connection; used by :class:`MqttReleaseActuator`."""
        client = self._client
        if client is None:
            raise TransientIntegrationError("MQTT broker not connected")
        try:
            await client.publish(topic, payload, qos=qos, retain=False, timeout=self._timeout_s)
        except aiomqtt.MqttError as err:
            raise TransientIntegrationError(f"MQTT publish to {topic} failed: {err}") from err

    def release_actuator(self, release: ReleaseSection) -> MqttReleaseActuator:
        """The release actuator of a bay whose ``release.kind`` is ``mqtt``."""
        if release.kind != "mqtt" or not release.topic:
            raise ConfigError("bays[].release: kind mqtt needs 'topic'")
        return MqttReleaseActuator(self, topic=release.topic, payload=release.payload)

    # -- journal listener: called on commit, must never block ---------------

    def _on_journal_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "card.tapped" and self._client is not None:
            self._taps.append(event)  # bounded: the oldest tap goes first
        self._poke()

    def _poke(self) -> None:
        wake(self._loop, self._loop_thread, self._wake)

    # -- the link state machine ---------------------------------------------

    def _enter(self, state: LinkState) -> None:
        if state is not self.state:
            log.debug("mqtt link %s -> %s", self.state, state)
        self.state = state

    async def _link(self) -> None:
        self._enter(LinkState.CONNECTING)
        while True:
            match self.state:
                case LinkState.CONNECTING | LinkState.CONNECTED:
                    await self._session()  # returns when the link is lost
                    self._enter(LinkState.BACKING_OFF)
                case LinkState.BACKING_OFF:
                    await self._clock.sleep(self._backoff.next_delay())
                    self._enter(LinkState.CONNECTING)

    async def _session(self) -> None:
        """One connection, from CONNECT to its loss. Transient failures are
        logged here; refused credentials raise."""
        client = self._make_client()
        started = None
        try:
            async with client:
                started = self._clock.monotonic()
                await self._connected(client)
        except MqttConnectError as err:
            code = getattr(err.rc, "value", err.rc)
            if code in _AUTH_REFUSED:
                raise PermanentIntegrationError(f"MQTT broker {self._broker.host} refused the credentials: {err}") from err
            self._note_failure(err)
        except aiomqtt.MqttError as err:
            self._note_failure(err)
        finally:
            self._client = None
            _consume_disconnect_reason(client)
        if started is not None and self._clock.monotonic() - started >= self._stable_after_s:
            self._backoff.reset()

    def _note_failure(self, err: Exception) -> None:
        self._failures += 1
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        log.log(level, "mqtt broker %s:%s: %s", self._broker.host, self._broker.port, err)

    async def _connected(self, client: aiomqtt.Client) -> None:
        self._enter(LinkState.CONNECTED)
        self.connects += 1
        if self._failures:
            log.info("mqtt connected to %s:%s after %d failures", self._broker.host, self._broker.port, self._failures)
        else:
            log.info("mqtt connected to %s:%s", self._broker.host, self._broker.port)
        self._failures = 0
        try:
            snapshot = self._station.snapshot()
            self._entities = bind_entities([b.bay for b in snapshot.bays])
            self._commands = {
                self.topics.command(e.key, e.bay): e for e in self._entities if e.description.command is not None
            }
            await client.subscribe([(self.topics.birth, 1), *((t, 1) for t in self._commands)])
            self._client = client
            self._taps.clear()  # taps from before this connection are stale news
            # The publisher sends discovery, online and states while the
            # receiver already listens: a drop mid-way is noticed at once
            # rather than after a publish timeout.
            self._full_publish = True
            self._wake.set()
            await self._serve(client)
        except asyncio.CancelledError:
            await self._say_offline(client)
            raise

    async def _serve(self, client: aiomqtt.Client) -> None:
        tasks = [
            asyncio.create_task(self._receive(client), name="mqtt-receive"),
            asyncio.create_task(self._publisher(client), name="mqtt-publish"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise the MqttError that ended the session
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        try:
            await client.publish(self.topics.status, OFFLINE, qos=1, retain=True, timeout=min(2.0, self._timeout_s))
            log.info("mqtt: published offline on clean shutdown")
        except aiomqtt.MqttError as err:
            log.debug("mqtt: could not publish offline on shutdown: %s", err)

    def _make_client(self) -> aiomqtt.Client:
        b = self._broker
        client = aiomqtt.Client(
            b.host,
            b.port,
            username=b.username,
            password=b.password,
            identifier=f"borne-{self._station_id}",
            will=aiomqtt.Will(self.topics.status, OFFLINE, qos=1, retain=True),
            keepalive=self._config.keepalive_s,
            timeout=self._timeout_s,
            tls_context=ssl.create_default_context() if b.tls else None,
        )
        # A (re)publish sends one batch of at most _BATCH messages; aiomqtt
        # warns from 10 pending calls, which would be every connect here.
        client.pending_calls_threshold = 2 * _BATCH
        return client

    # -- inbound ----------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            payload = _text(message.payload)
            if topic == self.topics.birth:
                if payload == ONLINE:
                    log.info("mqtt: Home Assistant is online, republishing discovery")
                    self._full_publish = True
                    self._wake.set()
                continue
            entity = self._commands.get(topic)
            if entity is None:
                continue
            if message.retain:
                log.warning("mqtt: ignoring retained command on %s (clear it on the broker)", topic)
                continue
            try:
                self._command_queue.put_nowait((entity, payload))
            except asyncio.QueueFull:
                log.warning("mqtt: command queue full, dropping %s %r", topic, payload)

    async def _command_worker(self) -> None:
        """Runs commands one at a time, in order, across reconnects."""
        while True:
            entity, payload = await self._command_queue.get()
            command = entity.description.command
            assert command is not None
            where = entity.key if entity.bay is None else f"bay {entity.bay} {entity.key}"
            try:
                result = await command(self._station, entity.bay, payload)
            except ValueError as err:
                log.warning("mqtt: bad command payload for %s: %s", where, err)
            except BorneError as err:
                log.warning("mqtt: command %s %r failed: %s", where, payload, err)
            except Exception:
                log.exception("mqtt: command %s %r crashed", where, payload)
            else:
                log.info("mqtt: command %s %r from Home Assistant%s", where, payload, _decision_note(result))
            self._wake.set()

    # -- outbound -----------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await self._clock.sleep(self._state_interval_s)
            self._wake.set()

    async def _publisher(self, client: aiomqtt.Client) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            snapshot = self._snapshot()
            if snapshot is None:
                continue
            if self._full_publish:
                await self._publish_everything(client, snapshot)
            else:
                await self._publish_states(client, snapshot, force=False)
            await self._publish_taps(client)

    def _snapshot(self) -> StationSnapshot | None:
        try:
            return self._station.snapshot()
        except Exception:
            log.exception("mqtt: station snapshot failed")
            return None

    async def _publish_everything(self, client: aiomqtt.Client, snapshot: StationSnapshot) -> None:
        self._full_publish = False
        device = DeviceInfo(
            station_id=self._station_id,
            name=snapshot.name,
            sw_version=snapshot.version,
            model=self._model,
            manufacturer=self._manufacturer,
        )
        configs = [discovery_message(e, self.topics, device, snapshot.version) for e in self._entities]
        await self._publish_many(client, ((t, json.dumps(p, sort_keys=True)) for t, p in configs), retain=True)
        await self._publish_many(client, [(self.topics.status, ONLINE)], retain=True)
        await self._publish_states(client, snapshot, force=True)
        log.debug("mqtt: published %d discovery configs and all states", len(configs))

    async def _publish_states(self, client: aiomqtt.Client, snapshot: StationSnapshot, *, force: bool) -> None:
        wanted = self._renderer.render(self._entities, snapshot, self._clock.now())
        changed = [(t, p) for t, p in wanted.items() if force or self._sent.get(t) != p]
        await self._publish_many(client, changed, retain=True)

    async def _publish_taps(self, client: aiomqtt.Client) -> None:
        topic = self.topics.state("taps", None)
        while self._taps:
            payload = json.dumps(tap_payload(self._taps.popleft()), sort_keys=True)
            await client.publish(topic, payload, qos=1, retain=False, timeout=self._timeout_s)

    async def _publish_many(self, client: aiomqtt.Client, items: Iterable[tuple[str, str]], *, retain: bool) -> None:
        """QoS 1, in batches awaited together: over a 4G link one round trip
        per batch rather than one per message."""
        items = list(items)
        for start in range(0, len(items), _BATCH):
            batch = items[start : start + _BATCH]
            results = await asyncio.gather(
                *(client.publish(t, p, qos=1, retain=retain, timeout=self._timeout_s) for t, p in batch),
                return_exceptions=True,
            )
            for (topic, payload), result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    raise result
                self._sent[topic] = payload


def _consume_disconnect_reason(client: aiomqtt.Client) -> None:
    """aiomqtt 2.5 stores an unexpected disconnection in a future that nothing
    reads once the session is over; read it, or asyncio logs "Future exception
    was never retrieved" at ERROR on every broker drop."""
    future = getattr(client, "_disconnected", None)
    if isinstance(future, asyncio.Future) and future.done() and not future.cancelled():
        future.exception()


def _text(payload: Any) -> str:
    if isinstance(payload, bytes | bytearray):
        return payload.decode("utf-8", errors="replace").strip()
    return "" if payload is None else str(payload).strip()


def _decision_note(result: object) -> str:
    reason = getattr(result, "reason", None)
    return f" -> {reason}" if reason is not None else ""


__all__ = ["LinkState", "MqttBridge"]
