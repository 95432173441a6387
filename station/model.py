"""Domain values: members, cards, reservations, decisions, readings.

Plain frozen dataclasses, no I/O. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class MemberStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


class CardKind(StrEnum):
    UID = "uid"  # the card's UID, looked up through its keyed hash
    SIGNED = "signed"  # an NDEF record signed by the town hall's issuing key


class ReservationStatus(StrEnum):
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class Mode(StrEnum):
    NORMAL = "normal"
    MAINTENANCE = "maintenance"
    OUT_OF_SERVICE = "out_of_service"


class Reason(StrEnum):
    """Why a tap or an unlock request was decided the way it was."""

    RESERVATION = "reservation"  # allowed: a reservation covers now
    WALK_UP = "walk_up"  # allowed: a free car, no reservation starting soon
    TRIP_ENDED = "trip_ended"  # the member's open trip ends here
    UNKNOWN_CARD = "unknown_card"
    INVALID_CREDENTIAL = "invalid_credential"  # forged or unreadable signed card
    SIGNED_CARD_REQUIRED = "signed_card_required"  # bare UID copy of a signed card
    CARD_REVOKED = "card_revoked"  # serial is not the roster's current one
    MEMBER_SUSPENDED = "member_suspended"
    MEMBER_REVOKED = "member_revoked"
    OUTSIDE_VALIDITY = "outside_validity"
    NO_RESERVATION = "no_reservation"
    OUTSIDE_WINDOW = "outside_window"
    NO_VEHICLE = "no_vehicle"
    VEHICLE_OUT = "vehicle_out"
    ROSTER_EXPIRED = "roster_expired"
    CLOCK_UNTRUSTED = "clock_untrusted"
    OUT_OF_SERVICE = "out_of_service"
    MAINTENANCE = "maintenance"
    RATE_LIMITED = "rate_limited"
    DUPLICATE_TAP = "duplicate_tap"
    BAY_FAULT = "bay_fault"

    @property
    def allows(self) -> bool:
        return self in (Reason.RESERVATION, Reason.WALK_UP, Reason.TRIP_ENDED)


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    member_id: str
    status: MemberStatus
    valid_from: datetime
    valid_until: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Card:
    ref: str
    kind: CardKind
    serial: int
    member_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    reservation_id: str
    member_id: str
    vehicle: str
    start: datetime
    end: datetime
    pickup: str
    dropoff: str
    status: ReservationStatus = ReservationStatus.CONFIRMED

    @property
    def one_way(self) -> bool:
        return self.pickup != self.dropoff


@dataclass(frozen=True, slots=True, kw_only=True)
class RosterInfo:
    version: int
    size: int
    expires_at: datetime | None
    applied_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    reason: Reason
    member_id: str | None = None
    reservation_id: str | None = None
    bay: str | None = None
    vehicle: str | None = None
    trip_id: str | None = None
    detail: str = ""

    @property
    def allowed(self) -> bool:
        return self.reason.allows

    @property
    def releases(self) -> bool:
        return self.reason in (Reason.RESERVATION, Reason.WALK_UP)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlugReading:
    """One poll of a smart plug. ``energy_kwh`` is the device's lifetime
    counter, None when the device has no meter register for it."""

    relay_on: bool
    power_w: float
    current_a: float | None = None
    voltage_v: float | None = None
    energy_kwh: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CardPresented:
    """What the reader saw: the UID and, when the card carries one, the raw
    NDEF message bytes (or why it could not be read)."""

    uid: bytes
    ndef: bytes | None = None
    ndef_error: str | None = None
    detected_at: float = 0.0  # clock.monotonic() when detected


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    key: str  # stable, e.g. "vehicle_not_plugged:1"
    title: str
    message: str
    severity: str = "warning"


@dataclass(frozen=True, slots=True, kw_only=True)
class BaySnapshot:
    bay: str
    home_vehicle: str
    vehicle: str | None  # the car parked at the bay, None while it is out
    state: str  # idle | waiting_plug | charging | complete | fault | released
    relay_on: bool | None
    power_w: float | None
    energy_kwh: float | None  # lifetime, None when unknown
    plug_reachable: bool
    open_trip_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StationSnapshot:
    station: str
    name: str
    version: str
    mode: Mode
    state: str  # ok | degraded | maintenance | out_of_service
    roster: RosterInfo | None
    reservations_version: int
    journal_last_seq: int
    journal_acked_seq: int
    clock_trusted: bool
    last_sync: datetime | None
    unknown_card_rate: float  # unknown or invalid credentials per minute
    bays: tuple[BaySnapshot, ...]
    alerts: tuple[Alert, ...] = field(default_factory=tuple)
