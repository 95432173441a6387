"""ApiServer.run: binds, serves, releases the socket on cancel."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from integrations.api import ApiServer
from station.errors import TransientIntegrationError
from tests.integrations.api.conftest import AUTH, api_config


async def test_run_serves_until_cancelled_then_frees_the_port(target):
    server = ApiServer(target, api_config(port=0), version="0.1.0", shutdown_timeout=1)
    task = asyncio.create_task(server.run())
    port = await asyncio.wait_for(server.wait_ready(), 5)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/v1/status", headers=AUTH) as resp:
            assert resp.status == 200
            assert (await resp.json())["station"] == "hede"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.port is None and not server.ready.is_set()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def test_port_in_use_is_a_transient_error(target):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = ApiServer(target, api_config(port=port), version="0")
        with pytest.raises(TransientIntegrationError, match=f"127.0.0.1:{port}"):
            await asyncio.wait_for(server.run(), 5)
