"""Run the station's long-lived services under one TaskGroup.

Each service is an ``async`` callable that runs until cancelled. When one
fails it is restarted after a capped exponential back-off (1 s doubling to
60 s); a service that keeps failing never takes the others down, and its
failures are reported through ``on_failure`` (the station journals and
alerts). Only cancellation stops the supervisor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from station.clock import Clock

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    name: str
    run: Callable[[], Awaitable[None]]
    critical: bool = False  # a critical service that returns stops the station


class Supervisor:
    def __init__(self, clock: Clock, *, on_failure: Callable[[str, BaseException, int], None] | None = None,
                 on_recovered: Callable[[str], None] | None = None,
                 initial_backoff: float = 1.0, max_backoff: float = 60.0, budget: int = 5,
                 budget_window: float = 60.0) -> None:
        self._clock = clock
        self._on_failure = on_failure
        self._on_recovered = on_recovered
        self._initial = initial_backoff
        self._max = max_backoff
        self._budget = budget
        self._window = budget_window
        self.restarts: dict[str, int] = {}

    async def run(self, services: list[Service]) -> None:
        async with asyncio.TaskGroup() as group:
            for service in services:
                group.create_task(self._keep(service), name=service.name)

    async def _keep(self, service: Service) -> None:
        backoff = self._initial
        recent: list[float] = []
        failing = False
        while True:
            started = self._clock.monotonic()
            try:
                await service.run()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - the supervisor is the last line
                now = self._clock.monotonic()
                if now - started > 2 * self._max:
                    backoff = self._initial  # it ran well for a while: start over
                recent = [t for t in recent if now - t < self._window] + [now]
                self.restarts[service.name] = self.restarts.get(service.name, 0) + 1
                level = logging.WARNING if not failing else logging.DEBUG
                _LOGGER.log(level, "%s failed (%s); restart in %.0f s", service.name, err, backoff)
                failing = True
                if self._on_failure is not None:
                    self._on_failure(service.name, err, len(recent))
                if len(recent) > self._budget:
                    backoff = self._max  # over budget: slow down to the cap
                await self._clock.sleep(backoff)
                backoff = min(backoff * 2, self._max)
                continue
            if service.critical:
                _LOGGER.info("%s finished; stopping", service.name)
                raise _Stop
            _LOGGER.debug("%s returned; not restarted", service.name)
            return

    def recovered(self, name: str) -> None:
        if self._on_recovered is not None:
            self._on_recovered(name)


class _Stop(Exception):
    pass


async def supervise(supervisor: Supervisor, services: list[Service]) -> None:
    """Run until cancelled or until a critical service finishes."""
    try:
        await supervisor.run(services)
    except* _Stop:
        pass
