"""``ModbusPlug``: the ``Plug`` port over a Modbus smart plug (relay + meter).

The register map comes from a device profile (``config/plugs/*.yaml``). Each
operation holds the link for its whole sequence of requests, so a switch
(write, read back) and a poll (relay, meter) never interleave.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from integrations.modbus.codec import DecodeError, decode
from integrations.modbus.link import ModbusLink
from integrations.modbus.profile import PlugProfile, Point, ProfileError, Relay, load_profile
from station.clock import Clock
from station.config import PlugSection
from station.errors import PermanentIntegrationError, RelayMismatch
from station.model import PlugReading

log = logging.getLogger(__name__)

_MAX_SPAN = 125  # registers per read request (Modbus limit)


@dataclass(frozen=True, slots=True)
class _Span:
    """One read request covering one or more meter points."""

    function: str  # holding | input
    unit: int
    start: int
    count: int
    points: tuple[tuple[str, Point], ...]

    def describe(self) -> str:
        names = ", ".join(f"meter.{name}" for name, _ in self.points)
        end = self.start + self.count - 1
        return f"read {self.function} registers {self.start}..{end} (0x{self.start:04X}; {names}) unit {self.unit}"


def plan_reads(profile: PlugProfile, unit: int) -> tuple[_Span, ...]:
    """Group meter points into as few read requests as the profile allows."""
    meter = profile.meter
    spans: list[_Span] = []
    ordered = sorted(meter.points().items(), key=lambda item: (item[1].function, item[1].address))
    for name, point in ordered:
        last = spans[-1] if spans else None
        if (
            last is not None
            and last.function == point.function
            and point.address >= last.start + last.count
            and point.address - (last.start + last.count) <= meter.max_gap
            and point.address + point.count - last.start <= _MAX_SPAN
        ):
            spans[-1] = _Span(
                last.function,
                unit,
                last.start,
                point.address + point.count - last.start,
                (*last.points, (name, point)),
            )
        else:
            spans.append(_Span(point.function, unit, point.address, point.count, ((name, point),)))
    return tuple(spans)


class ModbusPlug:
    """A Modbus smart plug for one bay.

    ``switch(on)`` writes the relay and reads it back (a disagreeing read-back
    is a transient error); ``read()`` polls relay and meter. Errors are
    ``TransientIntegrationError`` (timeouts, disconnects, busy device: retry
    with back-off) or ``PermanentIntegrationError`` (illegal address, wrong
    data: fix the profile); messages name the bay and the register.
    """

    def __init__(
        self,
        section: PlugSection,
        profile: PlugProfile,
        *,
        bay: str,
        clock: Clock | None = None,
        link: ModbusLink | None = None,
        reconnect_delay: float = 0.5,
        reconnect_delay_max: float = 5.0,
    ) -> None:
        if section.transport not in ("tcp", "rtu"):
            raise ProfileError(f"bay {bay}: plug transport {section.transport!r} is not Modbus (tcp or rtu)")
        self.bay = bay
        self.profile = profile
        if not profile.verified:
            log.warning("bay %s: device profile %s is not verified against a real device", bay, profile.name)
        try:
            self._relay_unit = profile.relay.unit_for(section.unit)
            meter_unit = profile.meter.unit_for(section.unit)
        except ValueError as err:
            raise ProfileError(f"bay {bay}: profile {profile.name}: {err}") from None
        self._spans = plan_reads(profile, meter_unit)
        tcp = section.transport == "tcp"
        self._link = link or ModbusLink(
            name=f"bay {bay} plug",
            host=section.host if tcp else None,
            port=section.port,
            serial_port=None if tcp else section.serial_port,
            baudrate=section.baudrate,
            parity=section.parity,
            stopbits=section.stopbits,
            timeout_s=section.timeout_s,
            reconnect_delay=reconnect_delay,
            reconnect_delay_max=reconnect_delay_max,
            clock=clock,
        )

    @classmethod
    def from_config(cls, section: PlugSection, *, bay: str, clock: Clock | None = None) -> ModbusPlug:
        """Load ``section.profile`` (a name in config/plugs/ or a path) and build the plug."""
        return cls(section, load_profile(section.profile), bay=bay, clock=clock)

    @property
    def reachable(self) -> bool:
        return self._link.reachable

    async def switch(self, on: bool) -> bool:
        relay = self.profile.relay
        async with self._link.transaction() as request:
            await request(f"write {relay.describe()} {'on' if on else 'off'} unit {self._relay_unit}", self._writer(on))
            state = await self._read_relay(request)
            if state != on:  # inside the transaction: counted and logged as a failure
                raise RelayMismatch(
                    f"bay {self.bay}: {relay.describe()}: read back {'on' if state else 'off'} "
                    f"after writing {'on' if on else 'off'}",
                    wanted=on,
                    read=state,
                )
        return state

    async def read(self) -> PlugReading:
        values: dict[str, float] = {}
        async with self._link.transaction() as request:
            relay_on = await self._read_relay(request)
            for span in self._spans:
                response = await request(span.describe(), self._reader(span))
                values.update(self._decode(span, getattr(response, "registers", None)))
        return PlugReading(
            relay_on=relay_on,
            power_w=values["power_w"],
            current_a=values.get("current_a"),
            voltage_v=values.get("voltage_v"),
            energy_kwh=values.get("energy_kwh"),
        )

    async def close(self) -> None:
        await self._link.close()

    # -- requests --------------------------------------------------------

    def _writer(self, on: bool) -> Callable[[Any], Awaitable[Any]]:
        relay, unit = self.profile.relay, self._relay_unit
        if relay.kind == "coil":
            return lambda c: c.write_coil(relay.address, on, device_id=unit)
        value = relay.on_value if on else relay.off_value
        return lambda c: c.write_register(relay.address, value, device_id=unit)

    async def _read_relay(self, request: Callable[..., Awaitable[Any]]) -> bool:
        relay, unit = self.profile.relay, self._relay_unit
        what = f"read {relay.describe()} unit {unit}"
        if relay.kind == "coil":
            response = await request(what, lambda c: c.read_coils(relay.address, count=1, device_id=unit))
            bits = getattr(response, "bits", None)
            if not bits:
                raise PermanentIntegrationError(f"bay {self.bay}: {what}: response carries no coil state")
            return bool(bits[0])
        response = await request(what, lambda c: c.read_holding_registers(relay.address, count=1, device_id=unit))
        return _relay_value(self.bay, relay, what, getattr(response, "registers", None))

    def _reader(self, span: _Span) -> Callable[[Any], Awaitable[Any]]:
        if span.function == "input":
            return lambda c: c.read_input_registers(span.start, count=span.count, device_id=span.unit)
        return lambda c: c.read_holding_registers(span.start, count=span.count, device_id=span.unit)

    def _decode(self, span: _Span, registers: list[int] | None) -> dict[str, float]:
        if registers is None or len(registers) != span.count:
            got = "none" if registers is None else str(len(registers))
            raise PermanentIntegrationError(
                f"bay {self.bay}: {span.describe()}: expected {span.count} registers, got {got}"
            )
        out: dict[str, float] = {}
        for name, point in span.points:
            offset = point.address - span.start
            try:
                out[name] = decode(point, registers[offset : offset + point.count])
            except DecodeError as err:
                raise PermanentIntegrationError(
                    f"bay {self.bay}: profile {self.profile.name}: meter.{name} "
                    f"({point.function} register {point.address}, 0x{point.address:04X}, {point.type}): {err}"
                ) from None
        return out


def _relay_value(bay: str, relay: Relay, what: str, registers: list[int] | None) -> bool:
    if not registers or len(registers) != 1:
        raise PermanentIntegrationError(f"bay {bay}: {what}: expected 1 register, got {registers!r}")
    if registers[0] == relay.on_value:
        return True
    if registers[0] == relay.off_value:
        return False
    raise PermanentIntegrationError(
        f"bay {bay}: {what}: value {registers[0]} is neither on ({relay.on_value}) nor off ({relay.off_value})"
    )
