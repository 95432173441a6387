"""Real-device register maps on plain pymodbus servers, RTU over a
pseudo-terminal pair, and the release actuator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from integrations.modbus.plug import ModbusPlug
from integrations.modbus.profile import load_profile
from integrations.modbus.release import ModbusReleaseActuator
from integrations.modbus.simulator import PlugSimulator
from station.clock import ManualClock
from station.config import PlugSection, ReleaseSection
from station.errors import PermanentIntegrationError, TransientIntegrationError

pytestmark = pytest.mark.timeout(30)


def _sdm120_meter(volts: list[float] | list[int], datatype: DataType = DataType.FLOAT32) -> SimDevice:
    """Unit 1: an SDM120 as its protocol sheet describes it (FC04, float32,
    high word first; unlisted registers inside the block read 0)."""
    return SimDevice(
        id=1,
        simdata=(
            [SimData(65520, values=[False] * 16, datatype=DataType.BITS)],
            [SimData(65520, values=[False] * 16, datatype=DataType.BITS)],
            [SimData(65520, datatype=DataType.INVALID)],
            [
                SimData(0x0000, values=volts, datatype=datatype),  # voltage
                SimData(0x0002, values=[0.0, 0.0], datatype=DataType.FLOAT32),
                SimData(0x0006, values=[7.8], datatype=DataType.FLOAT32),  # current
                SimData(0x0008, values=[0.0, 0.0], datatype=DataType.FLOAT32),
                SimData(0x000C, values=[1794.0], datatype=DataType.FLOAT32),  # active power
                SimData(0x0156, values=[1234.5], datatype=DataType.FLOAT32),  # total kWh
            ],
        ),
    )


def _relay_module(unit: int) -> SimDevice:
    return SimDevice(
        id=unit,
        simdata=(
            [SimData(0, values=[False] * 8, datatype=DataType.BITS)],
            [SimData(65520, values=[False] * 16, datatype=DataType.BITS)],
            [SimData(65520, datatype=DataType.INVALID)],
            [SimData(65520, datatype=DataType.INVALID)],
        ),
    )


async def _serve(devices: list[SimDevice], port: int, **kw: object) -> ModbusTcpServer:
    server = ModbusTcpServer(devices, address=("127.0.0.1", port), **kw)  # type: ignore[arg-type]
    await server.serve_forever(background=True)
    return server


@pytest.fixture
async def sdm120_bus(dead_port: int) -> AsyncIterator[ModbusTcpServer]:
    server = await _serve([_sdm120_meter([230.1]), _relay_module(2)], dead_port)
    yield server
    await server.shutdown()


async def test_sdm120_with_relay_module(sdm120_bus: ModbusTcpServer, dead_port: int, make_plug: Callable[..., ModbusPlug]) -> None:
    plug = make_plug(dead_port, profile="eastron-sdm120-relay", unit=1)
    reading = await plug.read()
    assert reading.voltage_v == pytest.approx(230.1, abs=1e-3)
    assert reading.current_a == pytest.approx(7.8, abs=1e-5)
    assert reading.power_w == pytest.approx(1794.0)
    assert reading.energy_kwh == pytest.approx(1234.5)
    assert reading.relay_on is False
    assert await plug.switch(True) is True
    assert (await sdm120_bus.async_getValues(2, 1, 0, 1))[0] is True  # unit 2 got the write


async def test_integer_where_a_float_is_expected_is_permanent(dead_port: int, make_plug: Callable[..., ModbusPlug]) -> None:
    # The meter at this address answers 0.1 V units as uint16, not float32.
    server = await _serve([_sdm120_meter([2301, 0], DataType.UINT16), _relay_module(2)], dead_port)
    try:
        plug = make_plug(dead_port, profile="eastron-sdm120-relay")
        with pytest.raises(PermanentIntegrationError, match=r"bay 7: .*meter\.voltage_v \(input register 0, 0x0000, float32\): implausibly tiny"):
            await plug.read()
    finally:
        await server.shutdown()


async def test_wrong_register_count_is_permanent(dead_port: int, make_plug: Callable[..., ModbusPlug]) -> None:
    def short_reply(sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if sending and pdu.function_code == 4 and pdu.registers:
            pdu.registers = pdu.registers[:-2]  # a device answering 12 of 14 registers
        return pdu

    server = await _serve([_sdm120_meter([230.0]), _relay_module(2)], dead_port, trace_pdu=short_reply)
    try:
        plug = make_plug(dead_port, profile="eastron-sdm120-relay")
        with pytest.raises(PermanentIntegrationError, match=r"bay 7: read input registers 0\.\.13 .*expected 14 registers, got 12"):
            await plug.read()
    finally:
        await server.shutdown()


async def test_register_relay_profile(tmp_path: Path, dead_port: int) -> None:
    profile_path = tmp_path / "register-relay.yaml"
    profile_path.write_text(
        """
name: register-relay
source: [test]
relay: {kind: register, address: 10, on_value: 256, off_value: 512}
meter:
  power_w: {function: holding, address: 0, type: int32, word_order: little, scale: 0.1}
  voltage_v: {function: holding, address: 2, type: uint16, scale: 0.1}
"""
    )
    profile = load_profile(profile_path)
    async with PlugSimulator(profile, port=dead_port) as sim:
        sim.plug_in(soc=0.5)
        plug = ModbusPlug(PlugSection(host="127.0.0.1", port=dead_port, timeout_s=0.5), profile, bay="3")
        try:
            assert (await plug.read()).relay_on is False
            assert await plug.switch(True) is True
            await sim.advance(10)
            reading = await plug.read()
            assert reading.power_w == pytest.approx(1800) and reading.voltage_v == pytest.approx(230)
            assert reading.energy_kwh is None and reading.current_a is None
        finally:
            await plug.close()


# -- RTU over a pseudo-terminal pair -------------------------------------------


@pytest.fixture
async def rtu(pty_bridge) -> AsyncIterator[tuple[PlugSimulator, ModbusPlug]]:  # type: ignore[no-untyped-def]
    sim = PlugSimulator(serial_port=pty_bridge.server_path, speed=3600, tick_s=0.05)
    await sim.start()
    section = PlugSection(transport="rtu", serial_port=pty_bridge.client_path, timeout_s=0.3)
    plug = ModbusPlug(section, load_profile("simulator"), bay="2")
    yield sim, plug
    await plug.close()
    await sim.stop()


async def test_rtu_switch_and_charge(rtu: tuple[PlugSimulator, ModbusPlug]) -> None:
    sim, plug = rtu
    sim.plug_in(soc=0.4)
    assert await plug.switch(True)
    await sim.advance(60)
    reading = await plug.read()
    assert reading.relay_on and reading.power_w == pytest.approx(1800, rel=0.02)


async def test_rtu_device_gone_then_back(rtu: tuple[PlugSimulator, ModbusPlug], pty_bridge) -> None:  # type: ignore[no-untyped-def]
    _sim, plug = rtu
    await plug.read()
    pty_bridge.up = False  # cable cut: the bus goes silent
    with pytest.raises(TransientIntegrationError, match="No response"):
        await plug.read()
    pty_bridge.up = True
    await asyncio.sleep(0.4)  # let a late frame drain (RTU has no transaction id)
    assert (await plug.read()).voltage_v == 230.0


async def test_rtu_exception_response(rtu: tuple[PlugSimulator, ModbusPlug]) -> None:
    sim, plug = rtu
    sim.set_fault("exception:2")
    with pytest.raises(PermanentIntegrationError, match=r"bay 2 plug: .*exception 2"):
        await plug.read()
    sim.set_fault("exception:6")
    with pytest.raises(TransientIntegrationError, match="exception 6"):
        await plug.read()


async def test_rtu_port_missing_is_transient(tmp_path: Path) -> None:
    section = PlugSection(transport="rtu", serial_port=str(tmp_path / "ttyUSB9"), timeout_s=0.3)
    plug = ModbusPlug(section, load_profile("simulator"), bay="2")
    try:
        with pytest.raises(TransientIntegrationError, match="cannot connect"):
            await plug.read()
    finally:
        await plug.close()


# -- release actuator ------------------------------------------------------------


async def test_release_pulses_the_coil(sim: PlugSimulator) -> None:
    clock = ManualClock(datetime(2026, 6, 1, tzinfo=UTC))
    section = ReleaseSection(kind="modbus_coil", host="127.0.0.1", port=sim.port, coil=0, pulse_s=2.0)
    actuator = ModbusReleaseActuator(section, bay="1", clock=clock)
    try:
        pulse = asyncio.create_task(actuator.release())
        for _ in range(100):
            await asyncio.sleep(0.01)
            if sim.state.relay_on:
                break
        assert sim.state.relay_on and not pulse.done()
        await clock.advance(1.0)
        assert sim.state.relay_on and not pulse.done()
        await clock.advance(1.0)
        await asyncio.wait_for(pulse, 2)
        assert not sim.state.relay_on
    finally:
        await actuator.close()


async def test_release_on_a_dead_device_is_transient(dead_port: int) -> None:
    section = ReleaseSection(kind="modbus_coil", host="127.0.0.1", port=dead_port)
    actuator = ModbusReleaseActuator(section, bay="1", clock=ManualClock())
    t0 = time.monotonic()
    try:
        with pytest.raises(TransientIntegrationError, match="bay 1 release: cannot connect"):
            await actuator.release()
    finally:
        await actuator.close()
    assert time.monotonic() - t0 < 2
