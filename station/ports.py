"""Ports: what the station needs from the outside world, as small Protocols.

Adapters live in ``integrations/`` and are wired in by ``station.bootstrap``.
Every adapter converts its library's exceptions into
``TransientIntegrationError`` (retry with back-off) or
``PermanentIntegrationError`` (stop, alert) from ``station.errors``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from station.model import CardPresented, Decision, Mode, PlugReading, StationSnapshot


class Plug(Protocol):
    """A switched, metered socket (a Modbus smart plug)."""

    async def switch(self, on: bool) -> bool:
        """Set the relay, read it back, return the state read back."""

    async def read(self) -> PlugReading:
        """Poll relay state and meter."""

    async def close(self) -> None: ...


class CardReader(Protocol):
    """An NFC reader. ``run`` lives as long as the reader works: it calls
    ``on_card`` once per card presentation (a card held on the reader is one
    presentation) and raises an IntegrationError when the reader is lost."""

    async def run(self, on_card: Callable[[CardPresented], Awaitable[None]]) -> None: ...

    async def feedback(self, accepted: bool) -> None:
        """LED/buzzer where the reader has them; a no-op elsewhere."""


class ReleaseActuator(Protocol):
    """Unlocks one bay's car (Modbus coil, HA entity, MQTT command...)."""

    async def release(self) -> None: ...


class StationControl(Protocol):
    """What integrations (MQTT, Home Assistant, API) may ask of the station.

    Every command goes through the same services and rules as a tap.
    """

    def snapshot(self) -> StationSnapshot: ...

    def subscribe(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``listener`` with every journal event as it is committed (it
        must not block); returns the unsubscribe function."""

    async def set_charger(self, bay: str, on: bool, *, by: str) -> None: ...

    async def maintenance_release(self, bay: str, *, by: str) -> Decision: ...

    async def set_mode(self, mode: Mode, *, by: str) -> None: ...

    async def sync_now(self) -> None: ...

    async def vehicle_locked(self, vehicle: str, *, source: str) -> Decision | None:
        """The car's own lock signal: ends its open trip here, if any."""

    async def remote_unlock(
        self,
        *,
        request_id: str,
        vehicle: str | None,
        reservation_id: str | None = None,
        member_id: str | None = None,
    ) -> Decision: ...


class SyncTarget(Protocol):
    """What the sync API (central server side) may ask of the station."""

    def snapshot(self) -> StationSnapshot: ...

    async def apply_document(self, body: bytes) -> dict[str, Any]:
        """Verify and apply one signed roster or reservations document (or
        one part of one). Returns a small summary (type, version, applied,
        part, parts, size). Raises ``DocumentRejected`` (``conflict`` True for
        a delta on another base)."""

    async def journal_page(self, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Events with seq > after, in seq order, at most ``limit``; and the
        journal's last seq."""

    async def acknowledge(self, up_to: int) -> int:
        """Mark events up to ``up_to`` as received by the central server;
        returns the acknowledged seq. Raises DomainError beyond last seq."""

    def trust_clock(self, central_date: Any) -> None:
        """An authenticated central request carried this ``Date``."""

    async def remote_unlock(
        self,
        *,
        request_id: str,
        vehicle: str | None,
        reservation_id: str | None = None,
        member_id: str | None = None,
    ) -> Decision: ...
