"""One Modbus connection (TCP or RTU) shared by the requests to one device.

The link is a small explicit state machine::

    IDLE --first request--> CONNECTED <--reconnected-- RECONNECTING (pymodbus)
      |                        |  lost (pymodbus starts its own reconnect task)
      +--connect failed--> BACKOFF --delay elapsed, next request--> connect again

pymodbus reconnects by itself only after a connection it had is lost; when the
very first connect fails (the device is down when the station starts) the link
retries on later requests, waiting ``reconnect_delay`` doubling up to
``reconnect_delay_max`` between attempts. Requests made meanwhile fail fast
with :class:`TransientIntegrationError`.

Every request goes through :meth:`ModbusLink.transaction`, which holds a lock:
pymodbus allows one request in flight per connection. pymodbus exceptions and
exception responses are converted here; none escapes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ExceptionResponse, ModbusPDU

from station.clock import Clock, SystemClock
from station.errors import PermanentIntegrationError, TransientIntegrationError

log = logging.getLogger(__name__)

# Modbus exception codes (reliability notes §6): 1-3 are configuration errors,
# retrying will not help; 4 is a device fault; 5, 6, 0x0A, 0x0B are retryable.
_PERMANENT_CODES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value"}
_TRANSIENT_CODES = {
    4: "device failure",
    5: "acknowledge (busy)",
    6: "device busy",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target did not respond",
}


class LinkState(enum.Enum):
    IDLE = "idle"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # pymodbus' own reconnect task is running
    BACKOFF = "backoff"  # our connect failed; wait before the next attempt
    CLOSED = "closed"


class ModbusLink:
    """A lazily opened pymodbus client with error conversion.

    ``name`` prefixes every error message (e.g. ``"bay 1 plug 10.0.0.5:502"``).
    The client is created on first use, inside the running loop: constructing
    a link does no I/O.
    """

    def __init__(
        self,
        *,
        name: str,
        host: str | None = None,
        port: int = 502,
        serial_port: str | None = None,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        timeout_s: float = 1.0,
        retries: int = 0,
        reconnect_delay: float = 0.5,
        reconnect_delay_max: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        if (host is None) == (serial_port is None):
            raise ValueError("give exactly one of host (TCP) or serial_port (RTU)")
        if reconnect_delay <= 0 or reconnect_delay_max < reconnect_delay:
            # reconnect_delay=0 disables pymodbus' reconnect; a busy loop is worse.
            raise ValueError("need 0 < reconnect_delay <= reconnect_delay_max")
        self.name = name
        self._host, self._port, self._serial_port = host, port, serial_port
        self._baudrate, self._parity, self._stopbits = baudrate, parity, stopbits
        self._timeout = timeout_s
        self._retries = retries
        self._delay_min, self._delay_max = reconnect_delay, reconnect_delay_max
        self._clock = clock or SystemClock()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._lock = asyncio.Lock()
        self._state = LinkState.IDLE
        self._delay = 0.0
        self._next_attempt = 0.0
        self._failures = 0

    @property
    def endpoint(self) -> str:
        return f"{self._host}:{self._port}" if self._host else str(self._serial_port)

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def reachable(self) -> bool:
        """True while requests succeed (False after any failure, until the next success)."""
        return self._state is LinkState.CONNECTED and self._failures == 0

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        common: dict[str, Any] = {
            "timeout": self._timeout,
            "retries": self._retries,
            "reconnect_delay": self._delay_min,
            "reconnect_delay_max": self._delay_max,
        }
        if self._host is not None:
            return AsyncModbusTcpClient(self._host, port=self._port, **common)
        return AsyncModbusSerialClient(
            str(self._serial_port), baudrate=self._baudrate, parity=self._parity, stopbits=self._stopbits, **common
        )

    async def _ready(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        if self._state is LinkState.CLOSED:
            raise PermanentIntegrationError(f"{self.name}: link is closed")
        if self._client is None:
            self._client = self._make_client()
        client = self._client
        if client.connected:
            self._state = LinkState.CONNECTED
            return client
        reconnect_task = getattr(client.ctx, "reconnect_task", None)  # pymodbus' own loop
        if reconnect_task is not None and not reconnect_task.done():
            self._state = LinkState.RECONNECTING
            raise TransientIntegrationError(f"{self.name}: connection lost, reconnecting")
        now = self._clock.monotonic()
        if self._state is LinkState.BACKOFF and now < self._next_attempt:
            raise TransientIntegrationError(
                f"{self.name}: unreachable, next attempt in {self._next_attempt - now:.1f} s"
            )
        try:
            connected = await client.connect()
        except (ModbusException, OSError) as err:  # pyserial errors are OSErrors
            log.debug("%s: connect raised %r", self.name, err)
            connected = False
        if connected:
            self._state = LinkState.CONNECTED
            self._delay = 0.0
            return client
        self._delay = min(self._delay * 2, self._delay_max) if self._delay else self._delay_min
        self._next_attempt = now + self._delay
        self._state = LinkState.BACKOFF
        raise TransientIntegrationError(f"{self.name}: cannot connect to {self.endpoint}")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Callable[[str, Callable[[Any], Awaitable[ModbusPDU]]], Awaitable[ModbusPDU]]]:
        """Hold the link for a sequence of requests (e.g. write then read back).

        Yields ``request(what, call)``: ``call(client)`` makes one pymodbus
        request; ``what`` describes it for error messages ("read input
        registers 12..13 (meter.power_w) unit 1").
        """
        async with self._lock:
            try:
                yield self._request
            except (TransientIntegrationError, PermanentIntegrationError) as err:
                self._failed(err)
                raise
            else:
                self._succeeded()

    async def _request(self, what: str, call: Callable[[Any], Awaitable[ModbusPDU]]) -> ModbusPDU:
        client = await self._ready()
        try:
            response = await call(client)
        except (ModbusIOException, ConnectionException, TimeoutError, OSError) as err:
            raise TransientIntegrationError(f"{self.name}: {what}: {_short(err)}") from err
        except ModbusException as err:
            raise PermanentIntegrationError(f"{self.name}: {what}: {_short(err)}") from err
        if response is None:
            raise TransientIntegrationError(f"{self.name}: {what}: no response")
        if isinstance(response, ExceptionResponse) or response.isError():
            code = getattr(response, "exception_code", 0)
            if code in _PERMANENT_CODES:
                raise PermanentIntegrationError(
                    f"{self.name}: {what}: exception {code} ({_PERMANENT_CODES[code]})"
                )
            reason = _TRANSIENT_CODES.get(code, "unexpected exception code")
            raise TransientIntegrationError(f"{self.name}: {what}: exception {code} ({reason})")
        return response

    def _failed(self, err: Exception) -> None:
        self._failures += 1
        if self._failures == 1:
            log.warning("%s", err)
        else:
            log.debug("%s (failure %d in a row)", err, self._failures)

    def _succeeded(self) -> None:
        if self._failures:
            log.info("%s: answering again after %d failed attempts", self.name, self._failures)
        self._failures = 0

    async def close(self) -> None:
        self._state = LinkState.CLOSED
        if self._client is not None:
            self._client.close()  # also cancels pymodbus' reconnect task
            self._client = None


def _short(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]
