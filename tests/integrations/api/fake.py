"""An in-memory SyncTarget that behaves like the station's core.

Documents are really verified (Ed25519), versions and bases are enforced,
parts are staged and applied on the last one, the journal pages by seq and
refuses acknowledgements past its end, and remote unlocks are idempotent.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from station.errors import DocumentRejected, DomainError
from station.model import (
    BaySnapshot,
    Decision,
    Mode,
    Reason,
    RosterInfo,
    StationSnapshot,
)

STATION = "hede"
KEY_ID = "central-2026"
NOW = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def rfc3339(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def sign(payload: dict[str, Any] | bytes, key: Ed25519PrivateKey, key_id: str = KEY_ID) -> dict[str, str]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return {
        "key_id": key_id,
        "payload": base64.b64encode(raw).decode(),
        "signature": base64.b64encode(key.sign(raw)).decode(),
    }


def roster_payload(version: int, members: int = 2, *, kind: str = "full", base_version: int | None = None, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "roster",
        "kind": kind,
        "version": version,
        "station_scope": [STATION],
        "issued_at": rfc3339(NOW - timedelta(hours=1)),
        "expires_at": rfc3339(NOW + timedelta(days=7)),
        "members": [
            {
                "member_id": f"m{i}",
                "status": "active",
                "valid_from": "2026-01-01T00:00:00Z",
                "valid_until": "2027-01-01T00:00:00Z",
                "cards": [{"ref": f"{i:032x}", "kind": "uid", "serial": 1}],
            }
            for i in range(members)
        ],
    }
    if kind == "delta":
        payload["base_version"] = base_version
        payload["removed"] = []
    payload.update(extra)
    return payload


def reservations_payload(version: int, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "reservations",
        "kind": "full",
        "version": version,
        "station_scope": ["*"],
        "issued_at": rfc3339(NOW - timedelta(hours=1)),
        "expires_at": rfc3339(NOW + timedelta(days=1)),
        "reservations": [
            {
                "reservation_id": "r1",
                "member_id": "m1",
                "vehicle": "ami-1",
                "start": rfc3339(NOW),
                "end": rfc3339(NOW + timedelta(hours=2)),
                "pickup": STATION,
                "dropoff": STATION,
                "status": "confirmed",
            }
        ],
    }
    payload.update(extra)
    return payload


class FakeSyncTarget:
    def __init__(self, keys: dict[str, Ed25519PublicKey], *, events: int = 0) -> None:
        self.keys = keys
        self.versions = {"roster": 0, "reservations": 0}
        self.sizes = {"roster": 0, "reservations": 0}
        self.expires: dict[str, datetime | None] = {"roster": None, "reservations": None}
        self.staging: dict[str, tuple[int, int, dict[int, int]]] = {}  # type -> (version, parts, part->size)
        self.events: list[dict[str, Any]] = []
        self.acked = 0
        self.clock_dates: list[datetime] = []
        self.unlock_calls: list[dict[str, Any]] = []
        self._unlocks: dict[str, Decision] = {}
        self.reservations = {"r1": ("m1", "ami-1")}
        self.boot_id = str(uuid.uuid4())
        for _ in range(events):
            self.append("card.tapped", member_id="m1", data={"decision": "allow", "reason": "reservation"})

    # -- helpers for tests
    def append(self, type_: str, **fields: Any) -> dict[str, Any]:
        seq = len(self.events) + 1
        event = {
            "seq": seq,
            "id": str(uuid.uuid4()),
            "type": type_,
            "at": rfc3339(NOW + timedelta(seconds=seq)),
            "wall_trusted": True,
            "boot_id": self.boot_id,
            "station": STATION,
            "bay": "1",
            "vehicle": "ami-1",
            "member_id": None,
            "trip_id": None,
            "reservation_id": None,
            "data": {},
        }
        event.update(fields)
        self.events.append(event)
        return event

    # -- SyncTarget
    def snapshot(self) -> StationSnapshot:
        roster = None
        if self.versions["roster"]:
            roster = RosterInfo(
                version=self.versions["roster"], size=self.sizes["roster"], expires_at=self.expires["roster"], applied_at=NOW
            )
        return StationSnapshot(
            station=STATION,
            name="Hédé-Bazouges, place de la mairie",
            version="0.1.0",
            mode=Mode.NORMAL,
            state="ok",
            roster=roster,
            reservations_version=self.versions["reservations"],
            journal_last_seq=len(self.events),
            journal_acked_seq=self.acked,
            clock_trusted=bool(self.clock_dates),
            last_sync=None,
            unknown_card_rate=0.0,
            bays=(
                BaySnapshot(
                    bay="1",
                    home_vehicle="ami-1",
                    vehicle="ami-1",
                    state="charging",
                    relay_on=True,
                    power_w=1730.5,
                    energy_kwh=412.25,
                    plug_reachable=True,
                ),
                BaySnapshot(
                    bay="2",
                    home_vehicle="ami-2",
                    vehicle=None,
                    state="released",
                    relay_on=None,
                    power_w=None,
                    energy_kwh=None,
                    plug_reachable=False,
                    open_trip_id="t-9",
                ),
            ),
        )

    async def apply_document(self, body: bytes, *, expected_type: str | None = None) -> dict[str, Any]:
        envelope = json.loads(body)
        key = self.keys.get(envelope["key_id"])
        if key is None:
            raise DocumentRejected("unknown_key", f"no key {envelope['key_id']!r}")
        raw = base64.b64decode(envelope["payload"])
        try:
            key.verify(base64.b64decode(envelope["signature"]), raw)
        except InvalidSignature:
            raise DocumentRejected("bad_signature", "the signature does not match the payload") from None
        try:
            doc = json.loads(raw)
            type_, kind, version = doc["type"], doc["kind"], int(doc["version"])
        except (ValueError, KeyError, TypeError) as err:
            raise DocumentRejected("bad_payload", f"payload: {err}") from None
        if expected_type is not None and type_ != expected_type:
            raise DocumentRejected("wrong_type", f"a {type_} document sent as {expected_type}")
        scope = doc.get("station_scope", [])
        if "*" not in scope and STATION not in scope:
            raise DocumentRejected("wrong_scope", f"not for station {STATION}")
        if datetime.fromisoformat(doc["expires_at"]) <= NOW:
            raise DocumentRejected("expired", f"expired at {doc['expires_at']}")
        current = self.versions[type_]
        entries = doc.get("members" if type_ == "roster" else "reservations", [])
        if type_ == "roster":
            refs = [card["ref"] for member in entries for card in member["cards"]]
            if len(refs) != len(set(refs)):
                raise DocumentRejected("duplicate_card", "a card ref appears twice")
        if kind == "delta":
            if doc.get("base_version") != current:
                raise DocumentRejected(
                    "base_mismatch", f"delta on version {doc.get('base_version')}, station has {current}", conflict=True
                )
        elif version < current or (version == current and "part" not in doc):
            raise DocumentRejected("stale_version", f"version {version} is not above {current}")
        part, parts = doc.get("part"), doc.get("parts")
        if part is not None:
            staged = self.staging.get(type_)
            if staged is None or staged[0] != version or staged[1] != parts:
                staged = (version, parts, {})
                self.staging[type_] = staged
            staged[2][part] = len(entries)
            if len(staged[2]) < parts:
                return {"type": type_, "version": version, "applied": False, "part": part, "parts": parts, "size": len(entries)}
            size = sum(staged[2].values())
            del self.staging[type_]
        else:
            size = len(entries) + (self.sizes[type_] if kind == "delta" else 0)
        self.versions[type_] = version
        self.sizes[type_] = size
        self.expires[type_] = datetime.fromisoformat(doc["expires_at"])
        self.append(f"{type_}.applied", data={"version": version, "size": size})
        return {"type": type_, "version": version, "applied": True, "part": part, "parts": parts, "size": len(entries)}

    async def journal_page(self, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        return [dict(e) for e in self.events[after : after + limit]], len(self.events)

    async def acknowledge(self, up_to: int) -> int:
        if up_to > len(self.events):
            raise DomainError(f"cannot acknowledge {up_to}: the journal ends at {len(self.events)}")
        self.acked = max(self.acked, up_to)
        return self.acked

    def trust_clock(self, central_date: Any) -> None:
        self.clock_dates.append(central_date)

    async def remote_unlock(
        self,
        *,
        request_id: str,
        vehicle: str | None,
        reservation_id: str | None = None,
        member_id: str | None = None,
    ) -> Decision:
        self.unlock_calls.append({"request_id": request_id, "vehicle": vehicle, "reservation_id": reservation_id, "member_id": member_id})
        if request_id in self._unlocks:
            return self._unlocks[request_id]
        found = self.reservations.get(reservation_id or "")
        if found is None:
            decision = Decision(reason=Reason.NO_RESERVATION, member_id=member_id, vehicle=vehicle, detail="no such reservation")
        elif vehicle not in (None, found[1]):
            decision = Decision(reason=Reason.NO_VEHICLE, member_id=found[0], reservation_id=reservation_id, vehicle=vehicle)
        else:
            decision = Decision(
                reason=Reason.RESERVATION,
                member_id=found[0],
                reservation_id=reservation_id,
                bay="1",
                vehicle=found[1],
                trip_id=f"t-{len(self._unlocks) + 1}",
            )
            self.append("trip.started", member_id=found[0], reservation_id=reservation_id, trip_id=decision.trip_id)
        self._unlocks[request_id] = decision
        return decision


def new_key() -> tuple[Ed25519PrivateKey, dict[str, Ed25519PublicKey]]:
    key = Ed25519PrivateKey.generate()
    return key, {KEY_ID: key.public_key()}

