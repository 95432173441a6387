"""A simulated smart plug with a Citroën Ami behind it, a reader, an actuator."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from station.clock import Clock
from station.errors import TransientIntegrationError
from station.model import CardPresented, PlugReading

AMI_CAPACITY_WH = 5500.0
AMI_CHARGER_W = 1800.0
STANDBY_W = 3.0
VOLTAGE = 230.0


@dataclass(slots=True)
class AmiBattery:
    """State of charge in Wh; charges at ~1.8 kW, tapering above 90 %."""

    soc_wh: float = 2000.0
    plugged: bool = True

    def power(self, relay_on: bool) -> float:
        if not (relay_on and self.plugged):
            return 0.0
        ratio = self.soc_wh / AMI_CAPACITY_WH
        if ratio >= 0.999:
            return STANDBY_W
        if ratio > 0.9:
            return max(150.0, AMI_CHARGER_W * (1.0 - ratio) * 10.0)
        return AMI_CHARGER_W

    def charge(self, watts: float, seconds: float) -> None:
        if watts > STANDBY_W:
            self.soc_wh = min(AMI_CAPACITY_WH, self.soc_wh + watts * seconds / 3600.0 * 0.92)


class SimulatedPlug:
    """A plug whose meter integrates the Ami's draw on the injected clock."""

    def __init__(self, clock: Clock, battery: AmiBattery | None = None, *, relay_on: bool = False) -> None:
        self._clock = clock
        self.battery = battery or AmiBattery()
        self.relay_on = relay_on
        self.energy_wh = 0.0
        self.online = True
        self.extra_w = 0.0  # injected load (stuck relay, over-current)
        self._last = clock.monotonic()

    def _advance(self) -> None:
        now = self._clock.monotonic()
        dt = max(0.0, now - self._last)
        self._last = now
        watts = self.battery.power(self.relay_on)
        self.battery.charge(watts, dt)
        self.energy_wh += watts * dt / 3600.0

    async def switch(self, on: bool) -> bool:
        if not self.online:
            raise TransientIntegrationError("simulated plug is offline")
        self._advance()
        self.relay_on = on
        return self.relay_on

    async def read(self) -> PlugReading:
        if not self.online:
            raise TransientIntegrationError("simulated plug is offline")
        self._advance()
        power = self.battery.power(self.relay_on) + self.extra_w
        return PlugReading(relay_on=self.relay_on, power_w=power, current_a=power / VOLTAGE, voltage_v=VOLTAGE,
                           energy_kwh=self.energy_wh / 1000.0)

    async def close(self) -> None:
        return None


class SimulatedReader:
    """A reader fed by :meth:`present` (tests, scenario, demo)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[CardPresented] = asyncio.Queue()
        self.feedbacks: list[bool] = []

    def present(self, uid: bytes, ndef: bytes | None = None) -> None:
        self._queue.put_nowait(CardPresented(uid=uid, ndef=ndef))

    async def run(self, on_card: Callable[[CardPresented], Awaitable[None]]) -> None:
        while True:
            card = await self._queue.get()
            await on_card(card)

    async def feedback(self, accepted: bool) -> None:
        self.feedbacks.append(accepted)


class SimulatedRelease:
    def __init__(self) -> None:
        self.pulses = 0
        self.fail = False

    async def release(self) -> None:
        if self.fail:
            raise TransientIntegrationError("simulated actuator failure")
        self.pulses += 1
