"""``ModbusReleaseActuator``: the ``ReleaseActuator`` port as a pulsed coil.

For ``release: {kind: modbus_coil}``: coil on (read back), wait ``pulse_s`` on
the injected clock, coil off (read back). The coil is switched off even when
the wait is cancelled. A relay module on the plug's RS-485 bus must share the
plug's :class:`ModbusLink` (pass ``link=``): one serial port, one client.
"""

from __future__ import annotations

from integrations.modbus.link import ModbusLink
from station.clock import Clock, SystemClock
from station.config import ReleaseSection
from station.errors import ConfigError, TransientIntegrationError


class ModbusReleaseActuator:
    def __init__(
        self,
        section: ReleaseSection,
        *,
        bay: str,
        clock: Clock | None = None,
        link: ModbusLink | None = None,
        timeout_s: float = 1.0,
    ) -> None:
        if section.kind != "modbus_coil":
            raise ConfigError(f"bay {bay}: release kind {section.kind!r} is not modbus_coil")
        if link is None and not (section.host or section.serial_port):
            raise ConfigError(f"bay {bay}: release modbus_coil needs 'host' or 'serial_port'")
        self.bay = bay
        self._coil = section.coil
        self._unit = section.unit
        self._pulse_s = section.pulse_s
        self._clock = clock or SystemClock()
        self._link = link or ModbusLink(
            name=f"bay {bay} release",
            host=section.host,
            port=section.port,
            serial_port=None if section.host else section.serial_port,
            timeout_s=timeout_s,
            clock=self._clock,
        )
        self._owns_link = link is None

    async def release(self) -> None:
        await self._set(True)
        try:
            await self._clock.sleep(self._pulse_s)
        finally:
            await self._set(False)

    async def _set(self, on: bool) -> None:
        coil, unit = self._coil, self._unit
        state = "on" if on else "off"
        async with self._link.transaction() as request:
            await request(
                f"write release coil {coil} {state} unit {unit}",
                lambda c: c.write_coil(coil, on, device_id=unit),
            )
            response = await request(
                f"read release coil {coil} unit {unit}",
                lambda c: c.read_coils(coil, count=1, device_id=unit),
            )
            bits = getattr(response, "bits", None) or [None]
            if bits[0] is None or bool(bits[0]) != on:
                raise TransientIntegrationError(
                    f"bay {self.bay}: release coil {coil} unit {unit}: read back {bits[0]!r} after writing {state}"
                )

    async def close(self) -> None:
        if self._owns_link:
            await self._link.close()
