"""The plug simulator: the car model, its control API and its CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from integrations.modbus.plug import ModbusPlug
from integrations.modbus.simulator import AmiCharge, PlugSimulator

pytestmark = pytest.mark.timeout(30)
REPO = Path(__file__).resolve().parents[3]


def test_full_charge_takes_about_three_hours() -> None:
    car = AmiCharge(soc=0.0, relay_on=True, plugged=True)
    minutes = 0
    while car.soc < 1.0 and minutes < 600:
        car.step(60)
        minutes += 1
    assert 170 <= minutes <= 220
    assert car.energy_kwh == pytest.approx(5.5, rel=0.01)
    assert car.power_w() == 3.0  # standby once full
    before = car.energy_kwh
    car.step(3600)
    assert car.energy_kwh == pytest.approx(before + 0.003)  # standby still counts, never decreases


def test_no_power_without_relay_or_car() -> None:
    assert AmiCharge(relay_on=False, plugged=True).power_w() == 0.0
    assert AmiCharge(relay_on=True, plugged=False).power_w() == 0.0
    assert AmiCharge(relay_on=True, plugged=False, overcurrent=True).power_w() == pytest.approx(16 * 230)


def test_fault_modes_are_checked() -> None:
    sim = PlugSimulator()
    for mode in (None, "silent", "overcurrent", "stuck_relay", "nan", "exception:4", "exception:0x0B"):
        sim.set_fault(mode)
    for bad in ("exception:9", "exception:x", "loud"):
        with pytest.raises(ValueError):
            sim.set_fault(bad)
    with pytest.raises(ValueError):
        sim.plug_in(soc=1.5)


async def test_restart_keeps_the_port_and_the_car(sim: PlugSimulator, make_plug: Callable[..., ModbusPlug]) -> None:
    port = sim.port
    sim.plug_in(soc=0.6)
    await sim.stop()
    assert not sim.running
    await sim.start()
    assert sim.port == port and sim.state.plugged and sim.state.soc == pytest.approx(0.6, abs=0.01)


async def test_serves_the_sdm120_map_on_two_units(dead_port: int, make_plug: Callable[..., ModbusPlug]) -> None:
    async with PlugSimulator("eastron-sdm120-relay", port=dead_port, unit=5) as sim:
        sim.plug_in(soc=0.2)
        plug = make_plug(dead_port, profile="eastron-sdm120-relay", unit=5)
        assert await plug.switch(True)
        await sim.advance(60)
        reading = await plug.read()
        assert reading.power_w == pytest.approx(1800) and reading.voltage_v == pytest.approx(230)
        client = AsyncModbusTcpClient("127.0.0.1", port=dead_port, timeout=0.5, retries=0)
        await client.connect()
        try:
            assert (await client.read_coils(0, count=1, device_id=6)).bits[0] is True  # relay on unit 5+1
        finally:
            client.close()


async def test_cli_serves_until_terminated(dead_port: int, make_plug: Callable[..., ModbusPlug]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "integrations.modbus.simulator", "--port", str(dead_port), "--speed", "60", "--soc", "0.5",
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        banner = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert f"127.0.0.1:{dead_port}" in banner.decode()
        plug = make_plug(dead_port)
        assert await plug.switch(True)
        await asyncio.sleep(0.3)
        assert (await plug.read()).power_w == pytest.approx(1800, rel=0.02)
    finally:
        proc.terminate()
        rc = await asyncio.wait_for(proc.wait(), 10)
    assert rc == 0


def test_cli_bad_profile_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "integrations.modbus.simulator", "--profile", "nope"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=20,
    )
    assert result.returncode == 2 and "'nope'" in result.stdout
