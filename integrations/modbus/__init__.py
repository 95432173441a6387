"""Modbus smart plugs and release coils (pymodbus 3.16, pinned exactly).

``ModbusPlug`` implements ``station.ports.Plug``; ``ModbusReleaseActuator``
implements ``station.ports.ReleaseActuator``; ``PlugSimulator`` serves a
simulated plug for the demo and the tests. Register maps are data:
``config/plugs/*.yaml``, loaded by ``load_profile``.
"""

from integrations.modbus.link import ModbusLink
from integrations.modbus.plug import ModbusPlug
from integrations.modbus.profile import PlugProfile, ProfileError, load_profile
from integrations.modbus.release import ModbusReleaseActuator

__all__ = ["ModbusLink", "ModbusPlug", "ModbusReleaseActuator", "PlugProfile", "ProfileError", "load_profile"]
