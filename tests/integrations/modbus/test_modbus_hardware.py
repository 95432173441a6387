"""Optional: the adapter against a real plug (python-kasa's ``--ip`` idea).

    BORNE_TEST_PLUG_PROFILE=netio-powercable-modbus-101x \\
        pytest tests/integrations/modbus/test_modbus_hardware.py --plug 192.168.1.50[:502]

Reads only, unless ``BORNE_TEST_PLUG_SWITCH=1`` (it then toggles the relay
and puts it back): never run it with a car charging. ``BORNE_TEST_PLUG_UNIT``
sets the unit id (default 1).
"""

from __future__ import annotations

import os

import pytest

from integrations.modbus.plug import ModbusPlug
from integrations.modbus.profile import load_profile
from station.config import PlugSection

pytestmark = [pytest.mark.hardware, pytest.mark.timeout(30)]


@pytest.fixture
async def real_plug(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    target = request.config.getoption("--plug", default=None)
    if not target:
        pytest.skip("give --plug HOST[:PORT] to test a real plug")
    host, _, port = target.partition(":")
    section = PlugSection(
        transport="tcp",
        host=host,
        port=int(port or 502),
        unit=int(os.environ.get("BORNE_TEST_PLUG_UNIT", "1")),
        timeout_s=2.0,
        profile=os.environ.get("BORNE_TEST_PLUG_PROFILE", "simulator"),
    )
    plug = ModbusPlug(section, load_profile(section.profile), bay="hw")
    yield plug
    await plug.close()


async def test_real_plug_reads(real_plug: ModbusPlug) -> None:
    reading = await real_plug.read()
    if reading.voltage_v is not None:
        assert 180 < reading.voltage_v < 260


@pytest.mark.skipif(os.environ.get("BORNE_TEST_PLUG_SWITCH") != "1", reason="set BORNE_TEST_PLUG_SWITCH=1 to toggle the relay")
async def test_real_plug_switches_and_restores(real_plug: ModbusPlug) -> None:
    was_on = (await real_plug.read()).relay_on
    try:
        assert await real_plug.switch(not was_on) is (not was_on)
    finally:
        assert await real_plug.switch(was_on) is was_on
