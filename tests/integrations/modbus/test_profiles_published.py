"""Shipped device profiles against their published register maps.

Every profile in config/plugs loads, cites a source and is verified (a guessed
map reads silently wrong values). The NETIO PowerCable Modbus 101x profile is
checked against the Modbus/TCP table of its user manual: coil 101 (FC01/FC05)
is the output; input registers (FC04) 1 = voltage [V*10], 101 = output
current [mA], 201 = output power [W], 302/303 = output energy counter, upper
then lower 16 bits [Wh]; all uInt16.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from integrations.modbus.codec import DecodeError, decode, encode
from integrations.modbus.plug import ModbusPlug, plan_reads
from integrations.modbus.profile import PlugProfile, load_profile

pytestmark = pytest.mark.timeout(30)

# The repository's own folder, by path: DEFAULT_DIRS may put an installer's
# folder (or $BORNE_PLUG_PROFILES) first, which must not shadow what ships.
PLUGS = Path(__file__).resolve().parents[3] / "config" / "plugs"
SHIPPED = sorted(p.stem for p in PLUGS.glob("*.yaml"))
NETIO = "netio-powercable-modbus-101x"


def _shipped(name: str) -> PlugProfile:
    return load_profile(PLUGS / f"{name}.yaml")

# A register image in the manual's units: 230.1 V, 7.826 A, 1794 W and
# 1 234 567 Wh (0x0012D687: upper word 0x0012 at 302, lower 0xD687 at 303).
VOLTAGE_RAW = 2301  # V*10
CURRENT_RAW = 7826  # mA
POWER_RAW = 1794  # W
ENERGY_WORDS = [0x0012, 0xD687]  # Wh, upper 16 bits first
IMAGE = {1: [VOLTAGE_RAW], 101: [CURRENT_RAW], 201: [POWER_RAW], 302: ENERGY_WORDS}
EXPECTED = {"voltage_v": 230.1, "current_a": 7.826, "power_w": 1794.0, "energy_kwh": 1234.567}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_loads_cites_and_is_verified(name: str) -> None:
    profile = _shipped(name)
    assert profile.name == name
    assert profile.source and all(s.strip() for s in profile.source)
    assert profile.verified, f"{name}: a shipped profile must be checked against its published map"
    assert plan_reads(profile, 1)


def test_the_shipped_folder_is_found() -> None:
    assert {"simulator", "eastron-sdm120-relay"} <= set(SHIPPED)


def test_no_guessed_shelly_profile_ships() -> None:
    assert "shelly-pro-4pm" not in SHIPPED
    assert NETIO in SHIPPED


def test_netio_profile_matches_the_manual_table() -> None:
    profile = _shipped(NETIO)
    assert (profile.relay.kind, profile.relay.address) == ("coil", 101)
    points = profile.meter.points()
    layout = {name: (p.function, p.address, p.type, p.word_order) for name, p in points.items()}
    assert layout == {
        "power_w": ("input", 201, "uint16", "big"),
        "voltage_v": ("input", 1, "uint16", "big"),
        "current_a": ("input", 101, "uint16", "big"),
        "energy_kwh": ("input", 302, "uint32", "big"),
    }
    assert [(s.start, s.count) for s in plan_reads(profile, 1)] == [(1, 1), (101, 1), (201, 1), (302, 2)]


def test_netio_register_image_decodes_to_engineering_values() -> None:
    points = _shipped(NETIO).meter.points()
    for name, point in points.items():
        registers = IMAGE[point.address]
        assert decode(point, registers) == pytest.approx(EXPECTED[name], abs=1e-9), name
        assert encode(point, EXPECTED[name]) == registers, name  # and back, word for word


def test_netio_energy_word_order_matters() -> None:
    # Lower word first would be 0xD6870012 Wh (3.6 GWh): the profile's order is the manual's.
    point = _shipped(NETIO).meter.energy_kwh
    assert point is not None
    assert decode(point, list(reversed(ENERGY_WORDS))) == pytest.approx(0xD6870012 / 1000)
    assert decode(point, [0, 1]) == pytest.approx(0.001)  # 1 Wh
    assert decode(point, [1, 0]) == pytest.approx(65.536)  # 65 536 Wh


def test_netio_implausible_values_are_errors() -> None:
    points = _shipped(NETIO).meter.points()
    with pytest.raises(DecodeError, match="outside the plausible range"):
        decode(points["voltage_v"], [4000])  # 400.0 V on a household socket
    with pytest.raises(DecodeError, match="outside the plausible range"):
        decode(points["current_a"], [30000])  # 30 A through a 16 A plug


def _netio_device(unit: int = 1) -> SimDevice:
    """A PowerCable as its manual's Modbus/TCP table describes it."""
    return SimDevice(
        id=unit,
        simdata=(
            [SimData(101, values=[False] * 8, datatype=DataType.BITS)],  # 1st output
            [SimData(65520, values=[False] * 16, datatype=DataType.BITS)],
            # FC03: number of digital inputs, outputs, metered outputs; output state.
            [SimData(0, values=[0, 1, 1], datatype=DataType.UINT16), SimData(101, values=[0], datatype=DataType.UINT16)],
            [
                SimData(0, values=[5000, VOLTAGE_RAW, 998], datatype=DataType.UINT16),  # Hz*100, V*10, TPF*1000
                SimData(100, values=[CURRENT_RAW, CURRENT_RAW], datatype=DataType.UINT16),  # all, 1st output mA
                SimData(200, values=[POWER_RAW, POWER_RAW], datatype=DataType.UINT16),  # all, 1st output W
                SimData(300, values=ENERGY_WORDS + ENERGY_WORDS, datatype=DataType.UINT16),  # all, 1st output Wh
            ],
        ),
    )


@pytest.fixture
async def netio_server(dead_port: int) -> AsyncIterator[ModbusTcpServer]:
    server = ModbusTcpServer([_netio_device()], address=("127.0.0.1", dead_port))
    await server.serve_forever(background=True)
    yield server
    await server.shutdown()


async def test_netio_plug_on_a_modbus_server(
    netio_server: ModbusTcpServer, dead_port: int, make_plug: Callable[..., ModbusPlug]
) -> None:
    plug = make_plug(dead_port, profile=NETIO, unit=1)
    reading = await plug.read()
    assert reading.relay_on is False
    assert reading.voltage_v == pytest.approx(EXPECTED["voltage_v"])
    assert reading.current_a == pytest.approx(EXPECTED["current_a"])
    assert reading.power_w == pytest.approx(EXPECTED["power_w"])
    assert reading.energy_kwh == pytest.approx(EXPECTED["energy_kwh"])
    assert await plug.switch(True) is True
    assert (await netio_server.async_getValues(1, 1, 101, 1))[0] is True  # coil 101 got the write
    assert (await netio_server.async_getValues(1, 1, 102, 1))[0] is False  # the next coil untouched
    assert (await plug.read()).relay_on is True
    assert await plug.switch(False) is False
    assert (await netio_server.async_getValues(1, 1, 101, 1))[0] is False
