"""Time, injected everywhere.

The station never calls ``datetime.now()`` or ``asyncio.sleep()`` directly: it
asks a :class:`Clock`. Production uses :class:`SystemClock`; tests and the
scripted demo use :class:`ManualClock`, which only moves when told to, or
:class:`AcceleratedClock`, which runs N times faster than real time.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall time, timezone-aware UTC. Not trusted until synced."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (per boot)."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class AcceleratedClock:
    """Real time sped up by ``factor`` from ``start`` (for demos)."""

    def __init__(self, start: datetime, factor: float) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._start = start
        self._factor = factor
        self._t0 = time.monotonic()

    def _elapsed(self) -> float:
        return (time.monotonic() - self._t0) * self._factor

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed())

    def monotonic(self) -> float:
        return self._elapsed()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self._factor)


class ManualClock:
    """A clock that moves only when :meth:`advance` is called.

    Sleepers wake when the clock passes their deadline, so a test can run an
    hour of station life in milliseconds without patching ``asyncio.sleep``.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
        self._mono = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._mono + seconds, fut))
        try:
            await fut
        finally:
            self._sleepers = [(d, f) for d, f in self._sleepers if f is not fut]

    async def advance(self, seconds: float, *, step: float = 1.0) -> None:
        """Move time forward in steps, letting woken tasks run between steps."""
        remaining = seconds
        while remaining > 0:
            delta = min(step, remaining)
            remaining -= delta
            self._mono += delta
            self._now += timedelta(seconds=delta)
            for deadline, fut in list(self._sleepers):
                if deadline <= self._mono + 1e-9 and not fut.done():
                    fut.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)

    def set_wall(self, wall: datetime) -> None:
        """Step the wall clock (as NTP would) without moving monotonic time."""
        self._now = wall
