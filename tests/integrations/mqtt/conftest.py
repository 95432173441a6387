"""Fixtures for the MQTT bridge tests: a real mosquitto, a fake station and a
watcher that records everything on the broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integrations.fake_station import FakeStation
from tests.integrations.mqtt.mqtt_helpers import Watcher, watching
from tests.peers.mosquitto import Mosquitto, mosquitto  # noqa: F401  (fixture)


@pytest.fixture
def station() -> FakeStation:
    return FakeStation()


@pytest.fixture
async def watcher(mosquitto: Mosquitto) -> AsyncIterator[Watcher]:  # noqa: F811
    async with watching(mosquitto) as w:
        yield w
