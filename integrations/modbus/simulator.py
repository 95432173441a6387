"""A simulated smart plug with a Citroën Ami behind it, served by a real
pymodbus server (TCP, or RTU on a serial port).

Registers follow a device profile (default ``config/plugs/simulator.yaml``;
any profile works, e.g. the SDM120 + relay module, with its two unit ids).
With the relay on and the car plugged in, the plug draws about 1800 W (7.8 A
at 230 V), tapering above 90 % state of charge, then 3 W standby once the
battery is full; the lifetime energy counter only grows. Simulated time runs
``speed`` times faster than the clock.

Control API (tests, demo)::

    sim = PlugSimulator(speed=60)
    await sim.start(); sim.port
    sim.plug_in(soc=0.3); sim.unplug(); sim.set_fault("exception:4")
    sim.drop_connections()   # close client connections, keep listening
    sim.state            # SimState: relay_on, plugged, soc, power_w, ...
    await sim.advance(600)   # jump 600 simulated seconds now
    await sim.stop()

Faults: None, "silent" (no answer), "exception:<code>" (every request),
"overcurrent" (16 A with the relay on), "stuck_relay" (relay writes are
acknowledged but ignored), "nan" (float meter points read NaN).

CLI: ``python -m integrations.modbus.simulator --port 5020 --speed 60``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import functools
import logging
import math
import signal
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from integrations.modbus.codec import encode
from integrations.modbus.profile import PlugProfile, ProfileError, load_profile
from station.clock import Clock, SystemClock

log = logging.getLogger(__name__)

FAULTS = ("silent", "overcurrent", "stuck_relay", "nan")
_FC_BLOCK = {"coils": 0, "discrete": 1, "holding": 2, "input": 3}
_FC_CODE = {"coils": 1, "holding": 3, "input": 4}
_DUMMY = 65520  # address of placeholder blocks (pymodbus wants 4 non-empty blocks)
_NAN_WORDS = list(struct.unpack(">2H", struct.pack(">f", math.nan)))

# Set in the simulator's own task: its register updates bypass fault injection.
_internal: contextvars.ContextVar[bool] = contextvars.ContextVar("_internal", default=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimState:
    relay_on: bool
    plugged: bool
    soc: float
    power_w: float
    current_a: float
    voltage_v: float
    energy_kwh: float
    fault: str | None


@dataclass(slots=True, kw_only=True)
class AmiCharge:
    """The car behind the plug: a 5.5 kWh battery on a ≤ 1.8 kW charger."""

    capacity_kwh: float = 5.5
    max_power_w: float = 1800.0
    taper_from_soc: float = 0.9
    standby_w: float = 3.0
    voltage_v: float = 230.0
    overcurrent_a: float = 16.0
    relay_on: bool = False
    plugged: bool = False
    soc: float = 0.2
    energy_kwh: float = 0.0
    overcurrent: bool = False

    def power_w(self) -> float:
        if not self.relay_on:
            return 0.0
        if self.overcurrent:
            return self.overcurrent_a * self.voltage_v
        if not self.plugged:
            return 0.0
        if self.soc >= 1.0:
            return self.standby_w
        if self.soc < self.taper_from_soc:
            return self.max_power_w
        left = (1.0 - self.soc) / (1.0 - self.taper_from_soc)  # 1 -> 0 near full
        return self.max_power_w * (0.15 + 0.85 * left)

    def step(self, seconds: float) -> None:
        """Advance ``seconds`` of simulated time, in steps small enough for the taper."""
        while seconds > 0:
            dt = min(seconds, 30.0)
            seconds -= dt
            power = self.power_w()
            kwh = power * dt / 3_600_000
            self.energy_kwh += kwh
            if self.relay_on and self.plugged and not self.overcurrent and self.soc < 1.0:
                self.soc = min(1.0, self.soc + kwh / self.capacity_kwh)


class PlugSimulator:
    def __init__(
        self,
        profile: str | Path | PlugProfile = "simulator",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        serial_port: str | None = None,
        baudrate: int = 9600,
        unit: int = 1,
        speed: float = 1.0,
        tick_s: float = 0.25,
        clock: Clock | None = None,
        car: AmiCharge | None = None,
    ) -> None:
        self.profile = profile if isinstance(profile, PlugProfile) else load_profile(profile)
        self.car = car or AmiCharge()
        self._host, self._port, self._serial_port, self._baudrate = host, port, serial_port, baudrate
        self._speed, self._tick_s = speed, tick_s
        self._clock = clock or SystemClock()
        self._relay_unit = self.profile.relay.unit_for(unit)
        self._meter_unit = self.profile.meter.unit_for(unit)
        self._fault: str | None = None
        self._exception: ExcCodes | None = None
        self._answer = asyncio.Event()  # cleared while "silent"
        self._answer.set()
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._last = 0.0

    # -- control API -----------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def state(self) -> SimState:
        car = self.car
        power = car.power_w()
        return SimState(
            relay_on=car.relay_on,
            plugged=car.plugged,
            soc=car.soc,
            power_w=power,
            current_a=power / car.voltage_v,
            voltage_v=car.voltage_v,
            energy_kwh=car.energy_kwh,
            fault=self._fault,
        )

    def plug_in(self, soc: float | None = None) -> None:
        if soc is not None:
            if not 0.0 <= soc <= 1.0:
                raise ValueError("soc must be within 0..1")
            self.car.soc = soc
        self.car.plugged = True

    def unplug(self) -> None:
        self.car.plugged = False

    def set_fault(self, mode: str | None) -> None:
        exception: ExcCodes | None = None
        if mode is not None and mode.startswith("exception:"):
            try:
                exception = ExcCodes(int(mode.split(":", 1)[1], 0))
            except ValueError:
                raise ValueError(f"unknown Modbus exception code in {mode!r}") from None
        elif mode is not None and mode not in FAULTS:
            raise ValueError(f"unknown fault {mode!r}; use None, {', '.join(FAULTS)} or exception:<code>")
        self._fault, self._exception = mode, exception
        self.car.overcurrent = mode == "overcurrent"
        if mode == "silent":
            self._answer.clear()
        else:
            self._answer.set()

    def drop_connections(self) -> None:
        """Close every client connection, keep listening (a network glitch)."""
        if self._server is not None:
            for connection in list(self._server.active_connections.values()):
                connection.close()

    async def advance(self, seconds: float) -> None:
        """Run ``seconds`` of simulated time at once and publish the registers."""
        self.car.step(seconds)
        if self._server is not None:
            await self._publish()

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            return
        devices = self._devices()
        if self._serial_port is not None:
            server: ModbusTcpServer | ModbusSerialServer = ModbusSerialServer(
                devices, port=self._serial_port, baudrate=self._baudrate, timeout=1.0
            )
        else:
            server = ModbusTcpServer(devices, address=(self._host, self._port))
        await server.serve_forever(background=True)
        self._server = server
        if self._serial_port is None:
            listener: Any = server.transport  # an asyncio.Server once listening
            self._port = listener.sockets[0].getsockname()[1]
        self._answer.set() if self._fault != "silent" else self._answer.clear()
        self._last = self._clock.monotonic()
        self._ticker = asyncio.create_task(self._run(), name=f"plug simulator :{self._port}")
        log.info("plug simulator (%s) serving on %s", self.profile.name, self._serial_port or f"{self._host}:{self._port}")

    async def stop(self) -> None:
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        server, self._server = self._server, None
        self._answer.set()  # let silenced handlers finish
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
            await asyncio.sleep(0)  # let the transports close

    async def __aenter__(self) -> PlugSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- inside ------------------------------------------------------------

    async def _run(self) -> None:
        _internal.set(True)
        while True:
            now = self._clock.monotonic()
            self.car.step((now - self._last) * self._speed)
            self._last = now
            await self._publish()
            await self._clock.sleep(self._tick_s)

    async def _publish(self) -> None:
        token = _internal.set(True)
        try:
            server = self._server
            if server is None:
                return
            car = self.car
            power = car.power_w()
            values = {
                "power_w": power,
                "voltage_v": car.voltage_v,
                "current_a": power / car.voltage_v,
                "energy_kwh": car.energy_kwh,
            }
            for name, point in self.profile.meter.points().items():
                nan = self._fault == "nan" and point.type == "float32"
                words = _NAN_WORDS if nan else encode(point, values[name])
                await server.async_setValues(self._meter_unit, _FC_CODE[point.function], point.address, words)
            relay = self.profile.relay
            if relay.kind == "coil":
                await server.async_setValues(self._relay_unit, 5, relay.address, [car.relay_on])
            else:
                value = relay.on_value if car.relay_on else relay.off_value
                await server.async_setValues(self._relay_unit, 6, relay.address, [value])
        finally:
            _internal.reset(token)

    async def _action(
        self,
        unit: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if _internal.get():
            return None
        if not self._answer.is_set():
            await self._answer.wait()
        if self._exception is not None:
            return self._exception
        relay = self.profile.relay
        writes_relay = (
            set_values
            and unit == self._relay_unit
            and address <= relay.address < address + max(count, len(set_values))
            and function_code in ((5, 15) if relay.kind == "coil" else (6, 16))
        )
        if writes_relay and set_values is not None:
            index = relay.address - address
            if self._fault == "stuck_relay":
                on = self.car.relay_on
                set_values[index] = on if relay.kind == "coil" else (relay.on_value if on else relay.off_value)  # type: ignore[call-overload]
            else:
                written = set_values[index]
                self.car.relay_on = bool(written) if relay.kind == "coil" else written == relay.on_value
        return None

    def _devices(self) -> list[SimDevice]:
        blocks: dict[int, list[list[SimData]]] = {}

        def add(unit: int, block: str, data: SimData) -> None:
            blocks.setdefault(unit, [[], [], [], []])[_FC_BLOCK[block]].append(data)

        relay = self.profile.relay
        if relay.kind == "coil":
            add(self._relay_unit, "coils", SimData(relay.address, values=[self.car.relay_on], datatype=DataType.BITS))
        else:
            value = relay.on_value if self.car.relay_on else relay.off_value
            add(self._relay_unit, "holding", SimData(relay.address, values=[value], datatype=DataType.REGISTERS))
        meter = self.profile.meter
        ends: dict[str, int] = {}  # function -> end of the previous point
        for name, point in sorted(meter.points().items(), key=lambda item: (item[1].function, item[1].address)):
            end = ends.get(point.function)
            if end is not None and point.address < end:
                raise ProfileError(f"profile {self.profile.name}: meter.{name} overlaps another register")
            if end is not None and 0 < point.address - end <= meter.max_gap:
                # The profile reads across this gap: the device answers 0 there.
                gap = [0] * (point.address - end)
                add(self._meter_unit, point.function, SimData(end, values=gap, datatype=DataType.REGISTERS))
            add(self._meter_unit, point.function, SimData(point.address, values=[0] * point.count, datatype=DataType.REGISTERS))
            ends[point.function] = point.address + point.count
        devices = []
        for unit, lists in blocks.items():
            for index, data in enumerate(lists):
                if not data:
                    kind = DataType.BITS if index < 2 else DataType.INVALID
                    data.append(SimData(_DUMMY, values=[False] * 16 if index < 2 else 0, datatype=kind))
            devices.append(
                SimDevice(
                    id=unit,
                    simdata=(lists[0], lists[1], lists[2], lists[3]),
                    action=functools.partial(self._action, unit),
                )
            )
        return devices


# -- CLI -----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m integrations.modbus.simulator",
        description="Serve a simulated Modbus smart plug with a Citroën Ami behind it.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1; 0.0.0.0 in docker)")
    parser.add_argument("--port", type=int, default=5020, help="TCP port (default 5020)")
    parser.add_argument("--serial", metavar="DEVICE", help="serve Modbus RTU on this serial device instead of TCP")
    parser.add_argument("--baudrate", type=int, default=9600)
    parser.add_argument("--profile", default="simulator", help="device profile name or path (default simulator)")
    parser.add_argument("--unit", type=int, default=1, help="unit id (default 1)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    parser.add_argument("--soc", type=float, default=0.2, help="battery state of charge 0..1 (default 0.2)")
    parser.add_argument("--unplugged", action="store_true", help="start with the car not plugged in")
    parser.add_argument("--energy", type=float, default=0.0, help="initial lifetime energy counter, kWh")
    parser.add_argument("--verbose", "-v", action="store_true")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    sim = PlugSimulator(
        args.profile,
        host=args.host,
        port=args.port,
        serial_port=args.serial,
        baudrate=args.baudrate,
        unit=args.unit,
        speed=args.speed,
        car=AmiCharge(soc=args.soc, energy_kwh=args.energy, plugged=not args.unplugged),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with sim:
        print(f"plug simulator ({sim.profile.name}) on {args.serial or f'{args.host}:{sim.port}'}, speed x{args.speed:g}", flush=True)
        last: tuple[bool, bool, bool] | None = None
        while not stop.is_set():
            state = sim.state
            summary = (state.relay_on, state.plugged, state.soc >= 1.0)
            if summary != last:
                print(
                    f"relay {'on' if state.relay_on else 'off'}, car {'plugged' if state.plugged else 'unplugged'}, "
                    f"soc {state.soc:.0%}, {state.power_w:.0f} W, {state.energy_kwh:.3f} kWh",
                    flush=True,
                )
                last = summary
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        asyncio.run(_serve(args))
    except ProfileError as err:
        print(f"error: {err}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
