"""Fixtures for the Home Assistant REST tests: a fake Home Assistant on a real
loopback socket and a client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from integrations.homeassistant import HomeAssistantClient
from tests.integrations.fake_station import FakeStation
from tests.integrations.homeassistant.fake_ha import TOKEN, FakeHomeAssistant


@pytest.fixture
def fake_ha() -> FakeHomeAssistant:
    return FakeHomeAssistant()


@pytest.fixture
async def ha_url(fake_ha: FakeHomeAssistant) -> AsyncIterator[str]:
    server = TestServer(fake_ha.app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def client(ha_url: str) -> AsyncIterator[HomeAssistantClient]:
    c = HomeAssistantClient(ha_url, TOKEN, timeout_s=2.0)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def station() -> FakeStation:
    return FakeStation()
