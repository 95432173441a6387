"""Ends a trip when the car's own lock, as Home Assistant sees it, locks.

Polls each ``lock_entity_id`` over REST and calls
``station.vehicle_locked(vehicle, source=...)`` on every transition to
``locked``. The first state seen after start is only a baseline (a car found
locked at boot does not end anything), and ``unavailable``/``unknown`` are
ignored, so ``unlocked -> unavailable -> locked`` still counts as locking.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from integrations.homeassistant.client import HomeAssistantClient
from station.clock import Clock
from station.errors import BorneError, TransientIntegrationError
from station.ports import StationControl

log = logging.getLogger(__name__)

LOCKED = "locked"
_NO_INFO = frozenset({"unavailable", "unknown", ""})


class HomeAssistantLockWatcher:
    """``locks`` maps a lock entity id to the vehicle it belongs to
    (``{bay.release.lock_entity_id: bay.vehicle}`` for the bays that have one)."""

    def __init__(
        self,
        client: HomeAssistantClient,
        station: StationControl,
        clock: Clock,
        locks: Mapping[str, str],
        *,
        interval_s: float = 2.0,
    ) -> None:
        self._client = client
        self._station = station
        self._clock = clock
        self._locks = dict(locks)
        self._interval_s = interval_s
        self._last: dict[str, str] = {}  # entity -> last informative state
        self._failing: set[str] = set()

    async def run(self) -> None:
        """Until cancelled; PermanentIntegrationError (bad token, unknown
        entity) ends it."""
        while True:
            await self.poll_once()
            await self._clock.sleep(self._interval_s)

    async def poll_once(self) -> None:
        for entity_id, vehicle in self._locks.items():
            try:
                state = await self._client.get_state(entity_id)
            except TransientIntegrationError as err:
                level = logging.DEBUG if entity_id in self._failing else logging.WARNING
                self._failing.add(entity_id)
                log.log(level, "home assistant lock %s: %s", entity_id, err)
                continue
            self._failing.discard(entity_id)
            await self._observe(entity_id, vehicle, state)

    async def _observe(self, entity_id: str, vehicle: str, state: str) -> None:
        if state in _NO_INFO:
            return
        previous = self._last.get(entity_id)
        self._last[entity_id] = state
        if previous is None or previous == state:
            return
        log.info("home assistant lock %s: %s -> %s", entity_id, previous, state)
        if state != LOCKED:
            return
        try:
            decision = await self._station.vehicle_locked(vehicle, source=f"homeassistant:{entity_id}")
        except BorneError as err:
            log.warning("vehicle %s locked, but the station refused it: %s", vehicle, err)
            return
        if decision is not None:
            log.info("vehicle %s locked: %s", vehicle, decision.reason)
