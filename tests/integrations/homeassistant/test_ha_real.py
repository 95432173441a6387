"""Optional: the bridge and the REST adapters against a real Home Assistant.

Skipped unless ``BORNE_HA_TEST=1``. Needs Home Assistant 2024.3.3 (the last
release for Python 3.11) in its own virtualenv, given by ``BORNE_HA_HASS``
(default: ``hass`` on PATH)::

    python3.11 -m venv /tmp/ha && /tmp/ha/bin/pip install homeassistant==2024.3.3 "josepy<2"
    BORNE_HA_TEST=1 BORNE_HA_HASS=/tmp/ha/bin/hass pytest tests/integrations/homeassistant/test_ha_real.py

It boots Home Assistant on loopback without the UI (onboarding user, token,
MQTT config flow), starts the bridge on a real mosquitto, and checks what Home
Assistant made of the discovery: entity states and attributes, a command
round trip, energy going unavailable, the last will, and that Home Assistant
logged no MQTT discovery error about our entities.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from integrations.homeassistant import HomeAssistantClient, HomeAssistantNotifier
from station.clock import SystemClock
from station.errors import IntegrationError
from station.model import Alert
from tests.integrations.fake_station import FakeStation
from tests.integrations.mqtt.mqtt_helpers import make_bridge, running
from tests.peers.mosquitto import Mosquitto, free_port, mosquitto  # noqa: F401  (fixture)

HASS = os.environ.get("BORNE_HA_HASS") or shutil.which("hass")

pytestmark = [
    pytest.mark.skipif(os.environ.get("BORNE_HA_TEST") != "1", reason="real Home Assistant test: set BORNE_HA_TEST=1"),
    pytest.mark.skipif(HASS is None, reason="no Home Assistant: set BORNE_HA_HASS to its 'hass' script"),
    pytest.mark.slow,
    pytest.mark.timeout(600),
]

CONFIGURATION = """\
homeassistant:
  name: borne test
  latitude: 48.29
  longitude: -1.78
  elevation: 80
  unit_system: metric
  time_zone: Europe/Paris
  currency: EUR
  country: FR
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
config:
onboarding:
logger:
  default: warning
"""


async def _wait_http(url: str, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"{url}/api/onboarding") as resp:
                    if resp.status == 200:
                        return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"Home Assistant not up at {url} within {timeout}s")
            await asyncio.sleep(0.5)


async def _onboard(url: str, broker: Mosquitto) -> str:
    client_id = f"{url}/"
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/api/onboarding/users",
            json={"client_id": client_id, "name": "Test", "username": "test", "password": "test-password", "language": "en"},
        ) as resp:
            assert resp.status == 200, await resp.text()
            code = (await resp.json())["auth_code"]
        async with session.post(
            f"{url}/auth/token", data={"grant_type": "authorization_code", "code": code, "client_id": client_id}
        ) as resp:
            token = (await resp.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        async with session.post(f"{url}/api/config/config_entries/flow", json={"handler": "mqtt"}, headers=headers) as resp:
            flow = await resp.json()
        async with session.post(
            f"{url}/api/config/config_entries/flow/{flow['flow_id']}",
            json={"broker": broker.host, "port": broker.port},
            headers=headers,
        ) as resp:
            result = await resp.json()
            assert result.get("type") == "create_entry", result
    return token


@pytest.fixture
async def home_assistant(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[tuple[str, str, Path]]:  # noqa: F811
    port = free_port()
    config_dir = tmp_path / "ha"
    config_dir.mkdir()
    (config_dir / "configuration.yaml").write_text(CONFIGURATION.format(port=port))
    assert HASS is not None
    proc = subprocess.Popen(
        [HASS, "-c", str(config_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_http(url, 240)
        token = await _onboard(url, mosquitto)
        yield url, token, config_dir / "home-assistant.log"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def _state(client: HomeAssistantClient, entity_id: str, wanted: str | None = None, timeout: float = 30) -> str:
    """Wait for ``wanted``, or (None) for any state but unknown/unavailable."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: str | None = None
    while True:
        with contextlib.suppress(IntegrationError):
            last = await client.get_state(entity_id)
            if last == wanted or (wanted is None and last not in ("unknown", "unavailable")):
                return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{entity_id}: wanted {wanted!r}, last {last!r}")
        await asyncio.sleep(0.3)


async def _attributes(url: str, token: str, entity_id: str) -> dict:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        async with session.get(f"{url}/api/states/{entity_id}") as resp:
            return (await resp.json())["attributes"]


async def test_real_home_assistant(home_assistant: tuple[str, str, Path], mosquitto: Mosquitto) -> None:  # noqa: F811
    url, token, log_file = home_assistant
    station = FakeStation()
    station.update(name="Hédé")
    client = HomeAssistantClient(url, token)
    try:
        bridge = make_bridge(mosquitto, station)
        async with running(bridge):
            assert await _state(client, "sensor.hede_bay_1_power", "1234.5")
            assert await _state(client, "sensor.hede_bay_1_lifetime_energy", "321.125")
            assert await _state(client, "switch.hede_bay_1_charger", "on")
            assert await _state(client, "select.hede_mode", "normal")
            assert await _state(client, "binary_sensor.hede_bay_1_charging", "on")
            assert await _state(client, "sensor.hede_state", "ok")
            assert await _state(client, "sensor.hede_last_sync", "2026-06-01T07:30:00+00:00")
            energy = await _attributes(url, token, "sensor.hede_bay_1_lifetime_energy")
            assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) == (
                "energy", "total_increasing", "kWh"
            )
            power = await _attributes(url, token, "sensor.hede_bay_1_power")
            assert (power["device_class"], power["state_class"], power["unit_of_measurement"]) == ("power", "measurement", "W")
            await client.call_service("switch", "turn_off", entity_id="switch.hede_bay_1_charger")
            await station.wait_for_calls(1, timeout=10)
            assert station.calls[0] == ("set_charger", "1", False, "homeassistant")
            await _state(client, "switch.hede_bay_1_charger", "off")
            await client.call_service("select", "select_option", entity_id="select.hede_mode", option="maintenance")
            await client.call_service("button", "press", entity_id="button.hede_bay_1_maintenance_release")
            await station.wait_for_calls(3, timeout=10)
            station.update_bay("1", energy_kwh=None)
            station.emit({"type": "plug.fault", "bay": "1"})
            await _state(client, "sensor.hede_bay_1_lifetime_energy", "unavailable")
            station.emit({"type": "card.tapped", "bay": "1", "data": {"reason": "unknown_card"}})
            await _state(client, "event.hede_taps")  # a timestamp once an event arrived
            notifier = HomeAssistantNotifier(client, station, SystemClock(), "hede")
            station.set_alerts(Alert(key="plug_fault:1", title="Plug fault", message="bay 1"))
            await notifier.sync_once()
            station.set_alerts()
            await notifier.sync_once()
        assert await _state(client, "sensor.hede_bay_1_power", "unavailable")  # offline on clean stop
    finally:
        await client.close()
    log = log_file.read_text() if log_file.exists() else ""
    bad = [line for line in log.splitlines() if "components.mqtt" in line and (" ERROR " in line or " WARNING " in line)]
    assert not bad, "\n".join(bad)
