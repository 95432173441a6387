"""Fixtures for the Modbus adapter tests: a real pymodbus server on loopback
(TCP) or behind a pseudo-terminal pair (RTU), and a lingering-task guard.

Real hardware: ``--plug HOST[:PORT]`` (profile from ``BORNE_TEST_PLUG_PROFILE``)
runs ``test_modbus_hardware.py`` against a real plug.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tty
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from integrations.modbus.plug import ModbusPlug
from integrations.modbus.profile import load_profile
from integrations.modbus.simulator import PlugSimulator
from station.config import PlugSection


@pytest.fixture(autouse=True)
async def no_lingering_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves a task running (aioesphomeapi's guard)."""
    before = set(asyncio.all_tasks())
    yield
    current = asyncio.current_task()
    for _ in range(50):  # closed transports and cancelled tasks need a few turns
        left = [t for t in asyncio.all_tasks() if t not in before and t is not current and not t.done()]
        if not left:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"tasks left running: {[t.get_name() for t in left]}")


@pytest.fixture
def dead_port() -> int:
    """A loopback port with nothing listening on it (yet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def sim() -> AsyncIterator[PlugSimulator]:
    simulator = PlugSimulator(speed=3600, tick_s=0.05)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def make_plug() -> AsyncIterator[Callable[..., ModbusPlug]]:
    plugs: list[ModbusPlug] = []

    def make(port: int, profile: str = "simulator", *, timeout_s: float = 0.5, unit: int = 1, **kw: object) -> ModbusPlug:
        section = PlugSection(transport="tcp", host="127.0.0.1", port=port, timeout_s=timeout_s, unit=unit, profile=profile)
        plug = ModbusPlug(section, load_profile(profile), bay="7", **kw)  # type: ignore[arg-type]
        plugs.append(plug)
        return plug

    yield make
    for plug in plugs:
        await plug.close()


@pytest.fixture
async def plug(sim: PlugSimulator, make_plug: Callable[..., ModbusPlug]) -> ModbusPlug:
    return make_plug(sim.port)


class PtyBridge:
    """Two pseudo-terminals joined back to back, like a USB-RS485 adapter
    pair on one bus: bytes written on one slave come out on the other.
    ``up = False`` cuts the wire."""

    def __init__(self) -> None:
        self._m1, self._s1 = os.openpty()
        self._m2, self._s2 = os.openpty()
        for fd in (self._s1, self._s2):
            tty.setraw(fd)  # no echo, no line discipline before pyserial opens it
        self.client_path = os.ttyname(self._s1)
        self.server_path = os.ttyname(self._s2)
        self.up = True

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self._m1, self._pump, self._m1, self._m2)
        loop.add_reader(self._m2, self._pump, self._m2, self._m1)

    def _pump(self, src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except OSError:
            return
        if self.up:
            os.write(dst, data)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in (self._m1, self._m2):
            loop.remove_reader(fd)
        for fd in (self._m1, self._m2, self._s1, self._s2):
            os.close(fd)


@pytest.fixture
async def pty_bridge() -> AsyncIterator[PtyBridge]:
    bridge = PtyBridge()
    bridge.start()
    yield bridge
    bridge.close()


@pytest.fixture
def caplog_modbus(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level("DEBUG", logger="integrations.modbus")
    yield caplog
