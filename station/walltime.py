"""Honest wall time on a machine without a battery clock.

A Raspberry Pi boots with whatever time it last saved. The wall clock is
trusted only once NTP says it is synced, or an authenticated request from the
central server carried a ``Date``; in the latter case the station keeps the
offset between that Date and its own clock rather than touching the system
clock. Events record whether the wall time was trusted when written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from station.clock import Clock

_LOGGER = logging.getLogger(__name__)

SKEW_TOLERANCE = timedelta(seconds=2)


class WallClock:
    """A :class:`~station.clock.Clock` whose ``now()`` is corrected and whose
    trust is known."""

    def __init__(self, base: Clock, *, policy: str = "auto", ntp_synced: Callable[[], bool] = lambda: False) -> None:
        self._base = base
        self._policy = policy
        self._ntp_synced = ntp_synced
        self._offset = timedelta(0)
        self._central_trusted = False

    def now(self) -> datetime:
        return self._base.now() + self._offset

    def monotonic(self) -> float:
        return self._base.monotonic()

    async def sleep(self, seconds: float) -> None:
        await self._base.sleep(seconds)

    @property
    def trusted(self) -> bool:
        if self._policy == "always":
            return True
        if self._central_trusted:
            return True
        if self._policy == "never":
            return False
        try:
            return bool(self._ntp_synced())
        except OSError:
            return False

    @property
    def offset(self) -> timedelta:
        return self._offset

    def trust_central(self, central_now: datetime) -> None:
        """An authenticated central request said it is ``central_now``."""
        skew = central_now - self._base.now()
        system_ok = self._policy == "always" or (self._policy == "auto" and self._safe_ntp())
        if not system_ok and abs(skew - self._offset) > SKEW_TOLERANCE:
            _LOGGER.info("wall clock corrected by %.1f s from the central server's Date", skew.total_seconds())
            self._offset = skew
        if not self._central_trusted:
            _LOGGER.info("wall clock trusted (central Date)")
        self._central_trusted = True

    def _safe_ntp(self) -> bool:
        try:
            return bool(self._ntp_synced())
        except OSError:
            return False
