"""Helpers for the MQTT bridge tests: a watcher that records everything on the
broker, a bridge factory with fast back-off, and small wait helpers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import aiomqtt

from integrations.mqtt import Backoff, LinkState, MqttBridge
from station.clock import SystemClock
from station.config import MqttSection
from tests.integrations.fake_station import FakeStation
from tests.peers.mosquitto import Mosquitto

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


class FixedWallClock(SystemClock):
    """Real sleeps and monotonic time (the broker is real), a fixed wall time
    (so roster age is predictable)."""

    def now(self) -> datetime:
        return NOW


class Watcher:
    """Everything published on the broker, as seen by a separate client."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.messages: list[aiomqtt.Message] = []
        self._new = asyncio.Event()

    async def pump(self) -> None:
        async for message in self.client.messages:
            self.messages.append(message)
            self._new.set()

    def payloads(self, topic: str) -> list[str]:
        return [_text(m) for m in self.messages if m.topic.value == topic]

    def last(self, topic: str) -> str | None:
        found = self.payloads(topic)
        return found[-1] if found else None

    def matching(self, pattern: str) -> list[aiomqtt.Message]:
        return [m for m in self.messages if m.topic.matches(pattern)]

    async def wait_for(
        self,
        topic: str,
        payload: str | Callable[[str], bool] | None = None,
        *,
        after: int = 0,
        timeout: float = 5.0,
    ) -> aiomqtt.Message:
        """The first message on ``topic`` (matching ``payload``) at index >= ``after``."""

        def find() -> aiomqtt.Message | None:
            for m in self.messages[after:]:
                if m.topic.value != topic:
                    continue
                text = _text(m)
                if payload is None or (payload(text) if callable(payload) else text == payload):
                    return m
            return None

        async def _wait() -> aiomqtt.Message:
            while (found := find()) is None:
                self._new.clear()
                await self._new.wait()
            return found

        try:
            return await asyncio.wait_for(_wait(), timeout)
        except TimeoutError:
            seen = [(m.topic.value, _text(m)) for m in self.messages[after:] if m.topic.value == topic]
            raise AssertionError(f"no {payload!r} on {topic} within {timeout}s; saw {seen}") from None

    def mark(self) -> int:
        return len(self.messages)


def _text(message: aiomqtt.Message) -> str:
    payload = message.payload
    return payload.decode() if isinstance(payload, bytes | bytearray) else str(payload)


@contextlib.asynccontextmanager
async def watching(broker: Mosquitto, topic: str = "#") -> AsyncIterator[Watcher]:
    async with aiomqtt.Client(broker.host, broker.port, identifier=None) as client:
        await client.subscribe(topic, qos=1)
        watcher = Watcher(client)
        task = asyncio.create_task(watcher.pump())
        try:
            yield watcher
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


def mqtt_section(broker: Mosquitto, **changes: object) -> MqttSection:
    return MqttSection(url=broker.url, **changes)  # type: ignore[arg-type]


def make_bridge(broker: Mosquitto, station: FakeStation, **kwargs: object) -> MqttBridge:
    options: dict[str, object] = dict(
        state_interval_s=3600.0,  # tests drive updates through journal events
        timeout_s=3.0,
        backoff=Backoff(initial=0.05, cap=0.4),
    )
    options.update(kwargs)
    section = options.pop("section", None) or mqtt_section(broker)
    return MqttBridge(section, station, FixedWallClock(), "hede", **options)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(bridge: MqttBridge) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(bridge.run(), name="bridge-under-test")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def until_connected(bridge: MqttBridge, connects: int = 1, timeout: float = 5.0) -> None:
    await until(
        lambda: bridge.state is LinkState.CONNECTED and bridge.connects >= connects and bridge.connected,
        timeout,
        f"bridge connection #{connects}",
    )
