"""ModbusPlug over TCP against a real pymodbus server (the plug simulator),
with fault injection."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from integrations.modbus.plug import ModbusPlug
from integrations.modbus.profile import ProfileError, load_profile
from integrations.modbus.simulator import PlugSimulator
from station.config import PlugSection
from station.errors import IntegrationError, PermanentIntegrationError, TransientIntegrationError
from station.model import PlugReading

pytestmark = pytest.mark.timeout(30)


async def _until_ok(plug: ModbusPlug, within: float) -> tuple[PlugReading, float]:
    """Poll like the station does (but faster) until a read succeeds."""
    t0 = time.monotonic()
    while True:
        try:
            return await plug.read(), time.monotonic() - t0
        except TransientIntegrationError:
            if time.monotonic() - t0 > within:
                raise
            await asyncio.sleep(0.05)


async def test_idle_plug_reads_off_and_zero(plug: ModbusPlug) -> None:
    reading = await plug.read()
    assert reading == PlugReading(relay_on=False, power_w=0.0, current_a=0.0, voltage_v=230.0, energy_kwh=0.0)
    assert plug.reachable


async def test_switch_reads_the_relay_back(plug: ModbusPlug, sim: PlugSimulator) -> None:
    assert await plug.switch(True) is True
    assert sim.state.relay_on
    assert (await plug.read()).relay_on
    assert await plug.switch(False) is False
    assert not sim.state.relay_on


async def test_simulated_ami_charges_then_stands_by(plug: ModbusPlug, sim: PlugSimulator) -> None:
    sim.plug_in(soc=0.3)
    await plug.switch(True)
    await sim.advance(60)
    charging = await plug.read()
    assert charging.power_w == pytest.approx(1800, rel=0.02)
    assert charging.current_a == pytest.approx(7.8, abs=0.1)
    assert charging.voltage_v == pytest.approx(230)
    await sim.advance(1800)
    later = await plug.read()
    assert later.energy_kwh is not None and charging.energy_kwh is not None
    assert later.energy_kwh - charging.energy_kwh == pytest.approx(0.9, rel=0.05)  # 1.8 kW for 30 min
    await sim.advance(5 * 3600)  # long enough to fill 5.5 kWh from 30 %
    full = await plug.read()
    assert sim.state.soc == 1.0
    assert full.relay_on and full.power_w < 15
    assert full.energy_kwh is not None and full.energy_kwh > later.energy_kwh


async def test_taper_near_full(plug: ModbusPlug, sim: PlugSimulator) -> None:
    sim.plug_in(soc=0.97)
    await plug.switch(True)
    await sim.advance(0)
    power = (await plug.read()).power_w
    assert 100 < power < 1800


async def test_accelerated_time_charges_in_the_background(plug: ModbusPlug, sim: PlugSimulator) -> None:
    sim.plug_in(soc=0.5)
    await plug.switch(True)
    first = await plug.read()
    await asyncio.sleep(0.3)  # speed 3600: about 18 simulated minutes
    second = await plug.read()
    assert second.power_w == pytest.approx(1800, rel=0.02)
    assert second.energy_kwh is not None and first.energy_kwh is not None
    assert second.energy_kwh > first.energy_kwh


@pytest.mark.parametrize("code", [1, 2, 3])
async def test_exception_codes_1_to_3_are_permanent(plug: ModbusPlug, sim: PlugSimulator, code: int) -> None:
    sim.set_fault(f"exception:{code}")
    with pytest.raises(PermanentIntegrationError, match=rf"bay 7 plug: read relay coil 0 .*exception {code}"):
        await plug.read()


@pytest.mark.parametrize("code", [4, 5, 6, 0x0A, 0x0B])
async def test_exception_codes_4_5_6_10_11_are_transient(plug: ModbusPlug, sim: PlugSimulator, code: int) -> None:
    sim.set_fault(f"exception:{code}")
    with pytest.raises(TransientIntegrationError, match=rf"bay 7 plug: .*exception {code}"):
        await plug.switch(True)
    sim.set_fault(None)
    assert await plug.switch(True)


async def test_illegal_address_names_bay_and_register(sim: PlugSimulator, make_plug: Callable[..., ModbusPlug]) -> None:
    # A profile pointing at a register the device does not have: exception 2.
    plug = make_plug(sim.port, profile="netio-powercable-modbus-101x")
    with pytest.raises(PermanentIntegrationError, match=r"bay 7 plug: read relay coil 101 \(0x0065\) unit 1: exception 2"):
        await plug.read()


async def test_silent_device_times_out_as_transient(sim: PlugSimulator, make_plug: Callable[..., ModbusPlug]) -> None:
    plug = make_plug(sim.port, timeout_s=0.2)
    sim.set_fault("silent")
    t0 = time.monotonic()
    with pytest.raises(TransientIntegrationError, match="No response"):
        await plug.read()
    assert time.monotonic() - t0 < 1.0
    assert not plug.reachable
    sim.set_fault(None)
    reading, _ = await _until_ok(plug, within=5)
    assert reading.voltage_v == 230.0


async def test_server_stopped_mid_charge_then_back(plug: ModbusPlug, sim: PlugSimulator) -> None:
    sim.plug_in(soc=0.3)
    await plug.switch(True)
    await sim.advance(60)
    assert (await plug.read()).power_w > 1000
    await sim.stop()
    for _ in range(3):  # every call fails fast and transient while it is down
        with pytest.raises(TransientIntegrationError):
            await plug.read()
    await asyncio.sleep(1.0)
    await sim.start()  # same port
    reading, took = await _until_ok(plug, within=10)
    assert took < 10
    assert reading.relay_on and reading.power_w > 100  # still charging (speed x3600: may taper)
    assert await plug.switch(False) is False  # back under control
    assert not sim.state.relay_on


async def test_dropped_connection_recovers(plug: ModbusPlug, sim: PlugSimulator) -> None:
    await plug.read()
    sim.drop_connections()
    await asyncio.sleep(0.05)
    _, took = await _until_ok(plug, within=5)
    assert took < 5


async def test_plug_built_while_device_is_down(dead_port: int, make_plug: Callable[..., ModbusPlug]) -> None:
    plug = make_plug(dead_port)  # no I/O here, no crash
    with pytest.raises(TransientIntegrationError, match="cannot connect"):
        await plug.read()
    t0 = time.monotonic()
    with pytest.raises(TransientIntegrationError, match="next attempt in"):
        await plug.switch(True)  # backing off: fails fast, no connect attempt
    assert time.monotonic() - t0 < 0.1
    async with PlugSimulator(port=dead_port, tick_s=0.05) as device:
        reading, took = await _until_ok(plug, within=10)
        assert took < 10 and not reading.relay_on
        assert await plug.switch(True)
        assert device.state.relay_on


async def test_stuck_relay_is_a_transient_error(plug: ModbusPlug, sim: PlugSimulator) -> None:
    sim.set_fault("stuck_relay")
    with pytest.raises(TransientIntegrationError, match=r"relay coil 0 .*read back off after writing on"):
        await plug.switch(True)
    assert not sim.state.relay_on


async def test_overcurrent_is_reported_not_hidden(plug: ModbusPlug, sim: PlugSimulator) -> None:
    await plug.switch(True)
    sim.set_fault("overcurrent")
    await sim.advance(0)
    reading = await plug.read()
    assert reading.current_a is not None and reading.current_a > 10
    assert reading.power_w > 3000


async def test_nan_is_a_permanent_error_naming_the_register(plug: ModbusPlug, sim: PlugSimulator) -> None:
    sim.set_fault("nan")
    await sim.advance(0)
    with pytest.raises(PermanentIntegrationError, match=r"bay 7: profile simulator: meter\.power_w \(input register 0, 0x0000, float32\): nan"):
        await plug.read()


async def test_logs_first_failure_at_warning_then_debug(
    dead_port: int, make_plug: Callable[..., ModbusPlug], caplog_modbus: pytest.LogCaptureFixture
) -> None:
    plug = make_plug(dead_port)
    for _ in range(3):
        with pytest.raises(TransientIntegrationError):
            await plug.read()
    records = [r for r in caplog_modbus.records if r.name == "integrations.modbus.link"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.DEBUG, logging.DEBUG]


async def test_no_pymodbus_exception_escapes_after_close(plug: ModbusPlug) -> None:
    await plug.close()
    with pytest.raises(IntegrationError):
        await plug.read()


async def test_simulated_transport_is_refused() -> None:
    with pytest.raises(ProfileError, match="not Modbus"):
        ModbusPlug(PlugSection(transport="simulated"), load_profile("simulator"), bay="7")


async def test_concurrent_calls_are_serialized(plug: ModbusPlug, sim: PlugSimulator) -> None:
    results = await asyncio.gather(*(plug.switch(i % 2 == 0) for i in range(10)), *(plug.read() for _ in range(10)))
    assert results[:10] == [i % 2 == 0 for i in range(10)]
    assert all(isinstance(r, PlugReading) for r in results[10:])
