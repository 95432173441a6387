"""Persistent notifications in Home Assistant for the alerts that need a human.

Driven by ``StationSnapshot.alerts``: an alert that appears is created with
``persistent_notification.create`` under a stable ``notification_id``
(``borne_<station>_<alert key>``), one that clears is dismissed. The station's
journal events wake it up; a periodic tick catches the rest and retries after
Home Assistant was unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from typing import Any

from integrations.homeassistant.client import HomeAssistantClient
from integrations.wake import wake
from station.clock import Clock
from station.errors import TransientIntegrationError
from station.model import Alert
from station.ports import StationControl

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
NEEDS_A_HUMAN = frozenset({"warning", "error", "critical"})


class HomeAssistantNotifier:
    def __init__(
        self,
        client: HomeAssistantClient,
        station: StationControl,
        clock: Clock,
        station_id: str,
        *,
        interval_s: float = 30.0,
        severities: frozenset[str] = NEEDS_A_HUMAN,
    ) -> None:
        self._client = client
        self._station = station
        self._clock = clock
        self._station_id = station_id
        self._interval_s = interval_s
        self._severities = severities
        self._shown: dict[str, Alert] = {}  # alert key -> what Home Assistant shows
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._failing = False

    def notification_id(self, key: str) -> str:
        return _UNSAFE.sub("_", f"borne_{self._station_id}_{key}")

    async def run(self) -> None:
        """Until cancelled. A refused token (PermanentIntegrationError) ends
        it; an unreachable Home Assistant is retried at the next tick."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        unsubscribe = self._station.subscribe(self._on_journal_event)
        ticker = asyncio.create_task(self._ticker(), name="ha-notifier-ticker")
        try:
            while True:
                self._wake.clear()
                try:
                    await self.sync_once()
                except TransientIntegrationError as err:
                    level = logging.DEBUG if self._failing else logging.WARNING
                    self._failing = True
                    log.log(level, "home assistant notifications: %s", err)
                else:
                    if self._failing:
                        log.info("home assistant notifications: reachable again")
                    self._failing = False
                await self._wake.wait()
        finally:
            unsubscribe()
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)

    async def sync_once(self) -> None:
        """Make Home Assistant's notifications match the snapshot's alerts."""
        snapshot = self._station.snapshot()
        wanted = {a.key: a for a in snapshot.alerts if a.severity in self._severities}
        for key in [k for k in self._shown if k not in wanted]:
            await self._client.call_service(
                "persistent_notification", "dismiss", notification_id=self.notification_id(key)
            )
            del self._shown[key]
            log.info("home assistant: dismissed alert %s", key)
        for key, alert in wanted.items():
            if self._shown.get(key) == alert:
                continue
            await self._client.call_service(
                "persistent_notification",
                "create",
                notification_id=self.notification_id(key),
                title=f"{snapshot.name}: {alert.title}",
                message=alert.message,
            )
            self._shown[key] = alert
            log.info("home assistant: notified alert %s", key)

    def _on_journal_event(self, event: dict[str, Any]) -> None:
        wake(self._loop, self._loop_thread, self._wake)

    async def _ticker(self) -> None:
        while True:
            await self._clock.sleep(self._interval_s)
            self._wake.set()
