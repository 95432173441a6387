"""The JSON of the sync API: request and response bodies as pydantic models.

These models are the single source of truth for the wire format: handlers
validate requests and build responses with them, and ``openapi.py`` builds the
published spec from their JSON schemas. Request bodies forbid unknown keys;
journal events keep any extra key the station adds (the journal is the record).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from station.model import Reason

MAX_JOURNAL_PAGE = 1000
DEFAULT_JOURNAL_PAGE = 500
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# -- errors -------------------------------------------------------------------


class ErrorBody(_Response):
    """Every 4xx/5xx answer."""

    error: str = Field(description="Stable machine-readable code, e.g. unauthorized, bad_json, invalid_request, version_conflict")
    detail: str = Field(description="Human-readable explanation; names the offending field when there is one")


# -- signed documents -----------------------------------------------------------


def _b64(value: str, field: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{field} is not valid base64") from None
    return value


class SignedDocument(_Request):
    """A signed roster or reservations document, or one part of one.

    ``payload`` is base64 of UTF-8 JSON carrying at least ``type``, ``kind``,
    ``version``, ``base_version`` (delta only), ``station_scope``,
    ``issued_at``, ``expires_at`` and, for a part, ``part`` and ``parts``.
    """

    key_id: str = Field(min_length=1, max_length=128, description="Id of the central key that signed the payload")
    payload: str = Field(min_length=1, description="base64 of the exact payload bytes (UTF-8 JSON)")
    signature: str = Field(min_length=1, description="base64 of the Ed25519 signature of the payload bytes")

    @field_validator("payload", "signature")
    @classmethod
    def _base64(cls, value: str, info: Any) -> str:
        return _b64(value, info.field_name)


class DocumentApplied(_Response):
    """What the station did with a document (or a part of one)."""

    type: Literal["roster", "reservations"]
    version: int = Field(description="Version of the document (or of the parts being staged)")
    applied: bool = Field(description="True once the document is in force; False while parts are being staged")
    part: int | None = Field(None, description="1-based part number, null for a whole document")
    parts: int | None = Field(None, description="Number of parts, null for a whole document")
    size: int | None = Field(None, description="Entries in this document or part")


# -- journal ----------------------------------------------------------------------


class JournalQuery(_Request):
    """Query parameters arrive as strings: parsed leniently; unknown ones are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=False)

    after: int = Field(0, ge=0, description="Return events with seq greater than this cursor")
    limit: int = Field(DEFAULT_JOURNAL_PAGE, ge=1, le=MAX_JOURNAL_PAGE, description="At most this many events")


class JournalEvent(BaseModel):
    """One journal fact. The station may add keys; they are passed through."""

    model_config = ConfigDict(extra="allow", frozen=True)

    seq: int = Field(ge=1, description="Per-station, strictly increasing")
    id: str = Field(description="Unique event id")
    type: str = Field(description="e.g. card.tapped, trip.started, trip.ended, charge.completed")
    at: datetime = Field(description="Wall time at the station (see wall_trusted)")
    wall_trusted: bool = Field(description="Whether the station's wall clock was trusted when the event was written")
    boot_id: str
    station: str
    bay: str | None = None
    vehicle: str | None = None
    member_id: str | None = None
    trip_id: str | None = None
    reservation_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class JournalPage(_Response):
    events: list[JournalEvent]
    next_after: int = Field(ge=0, description="Cursor for the next page: the seq of the last event returned, or the given cursor when none")
    last_seq: int = Field(ge=0, description="The journal's last seq; paging is done when next_after reaches it")


class JournalAck(_Request):
    up_to: int = Field(ge=0, description="Every event with seq up to this one has been received")


class JournalAcked(_Response):
    acknowledged: int = Field(ge=0, description="The station's acknowledged seq after this request")


# -- remote unlock ----------------------------------------------------------------


class UnlockCommand(_Request):
    """A remote unlock (phone user). Give a reservation_id, or a member_id for a walk-up."""

    request_id: str = Field(pattern=_ID, description="Idempotency key: a retry with the same id gets the same answer")
    reservation_id: str | None = Field(None, min_length=1, max_length=128)
    member_id: str | None = Field(None, min_length=1, max_length=128)
    vehicle: str | None = Field(None, min_length=1, max_length=64, description="The car to release; may be implied by the reservation")

    @model_validator(mode="after")
    def _who(self) -> UnlockCommand:
        if self.reservation_id is None and self.member_id is None:
            raise ValueError("give reservation_id or member_id")
        return self


class UnlockDecision(_Response):
    request_id: str
    allowed: bool = Field(description="True when the reason allows the request")
    releases: bool = Field(description="True when a car was released")
    reason: Reason
    member_id: str | None = None
    reservation_id: str | None = None
    bay: str | None = None
    vehicle: str | None = None
    trip_id: str | None = None
    detail: str = ""


# -- status -------------------------------------------------------------------------


class RosterStatus(_Response):
    version: int
    size: int
    expires_at: datetime | None
    applied_at: datetime | None


class ReservationsStatus(_Response):
    version: int


class JournalStatus(_Response):
    last_seq: int
    acked_seq: int
    backlog: int = Field(description="Events not yet acknowledged")


class BayStatus(_Response):
    bay: str
    home_vehicle: str
    vehicle: str | None = Field(description="The car parked at the bay; null while it is out")
    state: str = Field(description="idle | waiting_plug | charging | complete | fault | released")
    relay_on: bool | None
    power_w: float | None
    energy_kwh: float | None = Field(description="The plug's lifetime counter; null when unknown")
    plug_reachable: bool
    open_trip_id: str | None


class AlertStatus(_Response):
    key: str
    title: str
    message: str
    severity: str


class StationStatus(_Response):
    station: str
    name: str
    software_version: str
    mode: str = Field(description="normal | maintenance | out_of_service")
    state: str = Field(description="ok | degraded | maintenance | out_of_service")
    clock_trusted: bool
    last_sync: datetime | None
    unknown_card_rate: float = Field(description="Unknown or invalid credentials per minute")
    roster: RosterStatus | None = Field(description="null before the first roster")
    reservations: ReservationsStatus
    journal: JournalStatus
    bays: list[BayStatus]
    alerts: list[AlertStatus]


class Health(_Response):
    status: Literal["ok"] = "ok"
