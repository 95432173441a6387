"""The bridge's link: reconnects, Home Assistant's birth message, last will,
clean shutdown, refused credentials, back-off."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import aiomqtt
import pytest

from integrations.mqtt import Backoff, LinkState
from station.errors import PermanentIntegrationError
from tests.integrations.fake_station import FakeStation
from tests.integrations.mqtt.mqtt_helpers import (
    Watcher,
    make_bridge,
    running,
    until,
    until_connected,
    watching,
)
from tests.peers.mosquitto import Mosquitto, find_mosquitto

S = "borne/hede"
BAY = f"{S}/bay/1"
REPO = Path(__file__).resolve().parents[3]


async def retained(broker: Mosquitto, topic: str, *, wait: float = 0.3) -> dict[str, str]:
    """What a new subscriber gets right away: the retained messages."""
    out: dict[str, str] = {}
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(wait):
                async for m in client.messages:
                    if m.retain:
                        out[m.topic.value] = m.payload.decode()
        except TimeoutError:
            pass
    return out


async def test_broker_restart_brings_everything_back(mosquitto: Mosquitto, station: FakeStation) -> None:
    bridge = make_bridge(mosquitto, station)
    async with running(bridge):
        await until_connected(bridge)
        mosquitto.kill()  # retained discovery, states and status are lost with it
        await until(lambda: bridge.state is not LinkState.CONNECTED, what="the bridge to notice")
        station.update_bay("1", power_w=42.0)
        station.emit({"type": "charge.started", "bay": "1"})  # while the broker is away: nothing kept but a flag
        mosquitto.start()
        await until_connected(bridge, connects=2)
        async with watching(mosquitto) as watcher:  # subscribes after the republish: sees retained copies
            await watcher.wait_for(f"{S}/status", "online")
            await watcher.wait_for("homeassistant/switch/borne_hede/1_charger/config")
            await watcher.wait_for(f"{BAY}/power/state", "42.0")
            await until(lambda: len(watcher.matching("homeassistant/+/borne_hede/+/config")) == 21, what="all configs")
            # and commands work again
            mark = watcher.mark()
            await watcher.client.publish(f"{BAY}/charger/set", "OFF", qos=1)
            await station.wait_for_calls(1)
            await watcher.wait_for(f"{BAY}/charger/state", "OFF", after=mark)


async def test_bridge_started_before_the_broker_backs_off_then_connects(mosquitto: Mosquitto, station: FakeStation) -> None:
    mosquitto.kill()
    bridge = make_bridge(mosquitto, station)
    async with running(bridge):
        await until(lambda: bridge.state is LinkState.BACKING_OFF, what="back-off")
        await asyncio.sleep(0.3)
        assert bridge._backoff.attempts >= 2 and bridge.connects == 0
        mosquitto.start()
        async with watching(mosquitto, f"{S}/status") as watcher:
            await watcher.wait_for(f"{S}/status", "online")
        assert bridge.connects == 1


async def test_home_assistant_birth_republishes_discovery(mosquitto: Mosquitto, station: FakeStation, watcher: Watcher) -> None:
    bridge = make_bridge(mosquitto, station)
    async with running(bridge):
        await watcher.wait_for(f"{BAY}/plug_reachable/state")
        config = "homeassistant/sensor/borne_hede/1_energy/config"
        # Home Assistant's broker lost its retained messages (add-on restarted without persistence)
        await watcher.client.publish(config, b"", qos=1, retain=True)
        mark = watcher.mark()
        await watcher.client.publish("homeassistant/status", "offline", qos=1)
        await asyncio.sleep(0.1)
        assert not [m for m in watcher.messages[mark:] if m.topic.matches("homeassistant/+/borne_hede/+/config")]
        await watcher.client.publish("homeassistant/status", "online", qos=1)
        await watcher.wait_for(config, lambda p: p.startswith("{"), after=mark)
        await watcher.wait_for(f"{S}/status", "online", after=mark)
        await watcher.wait_for(f"{BAY}/energy/state", "321.125", after=mark)  # states follow the configs
        assert bridge.connects == 1
    assert (await retained(mosquitto, config))[config].startswith("{")


async def test_clean_shutdown_publishes_offline(mosquitto: Mosquitto, station: FakeStation, watcher: Watcher) -> None:
    bridge = make_bridge(mosquitto, station)
    async with running(bridge):
        await watcher.wait_for(f"{S}/status", "online")
    await watcher.wait_for(f"{S}/status", "offline")
    assert (await retained(mosquitto, f"{S}/status")) == {f"{S}/status": "offline"}


async def test_last_will_on_sigkill(mosquitto: Mosquitto, watcher: Watcher) -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("bridge_child.py")), mosquitto.url],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        await watcher.wait_for(f"{S}/status", "online", timeout=15)
        await watcher.wait_for(f"{BAY}/energy/state", timeout=5)
        mark = watcher.mark()
        child.send_signal(signal.SIGKILL)
        message = await watcher.wait_for(f"{S}/status", "offline", after=mark, timeout=5)
        assert message.qos == 1
        assert (await retained(mosquitto, f"{S}/status")) == {f"{S}/status": "offline"}
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=5)
        if child.stderr:
            child.stderr.close()


async def test_refused_credentials_are_permanent(tmp_path: Path, station: FakeStation) -> None:
    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto is not installed")
    broker = Mosquitto(binary, tmp_path, anonymous=False)
    broker.start()
    try:
        bridge = make_bridge(broker, station)
        with pytest.raises(PermanentIntegrationError, match="refused the credentials"):
            await asyncio.wait_for(bridge.run(), 5)
        assert station.listener_count == 0
    finally:
        broker.kill()


def test_backoff_is_capped_jittered_exponential() -> None:
    backoff = Backoff(initial=1.0, cap=8.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(8)]
    for n, delay in enumerate(delays):
        ceiling = min(8.0, 2.0**n)
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 8.0 and len(set(delays)) == len(delays)
    backoff.reset()
    assert 0.5 <= backoff.next_delay() <= 1.0
    for _ in range(5000):  # days offline: no overflow
        assert backoff.next_delay() <= 8.0
    with pytest.raises(ValueError):
        Backoff(initial=0)
