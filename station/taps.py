"""Debounce and rate limits for taps at one reader.

Pure: time comes from an injected :class:`~station.clock.Clock`
(``monotonic()`` only). The station asks :meth:`TapGate.admit` before
deciding a tap, and calls :meth:`TapGate.record_refusal` for every unknown
or invalid credential. More than ``limit_per_min`` refusals within a minute
locks the reader for ``lockout_s``; each lockout that follows the previous
one within ``quiet_s`` of its end lasts twice as long, up to an hour (or
``lockout_s`` if that is longer). After a lockout the count starts again.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable

from station.clock import Clock
from station.model import Reason

WINDOW_S = 60.0
MAX_LOCKOUT_S = 3600.0


class TapGate:
    def __init__(
        self,
        debounce_s: float,
        limit_per_min: int,
        lockout_s: float,
        clock: Clock,
        *,
        quiet_s: float = MAX_LOCKOUT_S,
    ) -> None:
        if debounce_s < 0 or limit_per_min < 1 or lockout_s <= 0 or quiet_s < 0:
            raise ValueError("TapGate: debounce_s >= 0, limit_per_min >= 1, lockout_s > 0, quiet_s >= 0")
        self._debounce_s = debounce_s
        self._limit = limit_per_min
        self._lockout_s = lockout_s
        self._max_lockout_s = max(MAX_LOCKOUT_S, lockout_s)
        self._quiet_s = quiet_s
        self._clock = clock
        self._seen: OrderedDict[Hashable, float] = OrderedDict()  # key -> last admitted, oldest first
        self._strikes: deque[float] = deque()  # refusals counting towards the next lockout
        self._recent: deque[float] = deque()  # refusals in the last minute, for the rate
        self._locked_until: float | None = None
        self._last_lockout_end: float | None = None
        self._lockout_s_current = lockout_s
        self._level = 0

    def admit(self, key: Hashable) -> Reason | None:
        """None: go on and decide this tap. RATE_LIMITED while locked out;
        DUPLICATE_TAP when ``key`` was admitted less than ``debounce_s`` ago."""
        now = self._clock.monotonic()
        if self._locked_until is not None and now < self._locked_until:
            return Reason.RATE_LIMITED
        while self._seen:
            oldest_key, at = next(iter(self._seen.items()))
            if now - at < self._debounce_s:
                break
            del self._seen[oldest_key]
        if key in self._seen:
            return Reason.DUPLICATE_TAP
        if self._debounce_s > 0:
            self._seen[key] = now
        return None

    def record_refusal(self) -> bool:
        """An unknown or invalid credential was presented. True when this one
        starts a lockout."""
        now = self._clock.monotonic()
        self._recent.append(now)
        self._prune(self._recent, now)
        if self._locked_until is not None and now < self._locked_until:
            return False
        self._strikes.append(now)
        self._prune(self._strikes, now)
        if len(self._strikes) <= self._limit:
            return False
        self._strikes.clear()
        if self._last_lockout_end is not None and now - self._last_lockout_end < self._quiet_s:
            if self._lockout_s_current < self._max_lockout_s:
                self._level += 1
        else:
            self._level = 0
        self._lockout_s_current = min(self._lockout_s * 2.0 ** min(self._level, 64), self._max_lockout_s)
        self._locked_until = now + self._lockout_s_current
        self._last_lockout_end = self._locked_until
        return True

    def unknown_rate_per_min(self) -> float:
        """Refusals recorded during the last minute."""
        self._prune(self._recent, self._clock.monotonic())
        return float(len(self._recent))

    @property
    def locked_until(self) -> float | None:
        """Monotonic time the current lockout ends, None when not locked."""
        if self._locked_until is not None and self._clock.monotonic() < self._locked_until:
            return self._locked_until
        return None

    @property
    def lockout_s(self) -> float:
        """Length of the current (or last) lockout."""
        return self._lockout_s_current

    @staticmethod
    def _prune(times: deque[float], now: float) -> None:
        while times and now - times[0] >= WINDOW_S:
            times.popleft()
