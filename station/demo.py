"""The embedded default: a demo station with nothing to install or configure.

Station "hede" with two bays (ami-1, ami-2), a demo central key that signs a
small roster and today's reservations, and a demo card key. Every key here is
public and for the demo only.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from station.config import Config, parse_config
from station.credentials import card_ref
from station.documents import sign

DEMO_CARD_KEY = "borne-demo-card-key-not-secret"
DEMO_KEY_ID = "demo-central-1"
DEMO_ISSUER_ID = "demo-townhall-1"
STATION = "hede"
OTHER = "bazouges"

# Members of the demo roster and their card UIDs (hex). Tap them with `borne tap UID`.
CARDS = {
    "alice": "0A0B0C0D",  # reservation of ami-1 now (round trip)
    "bob": "0B0B0B0B",  # no reservation: walk-up
    "carol": "0C0C0C0C",  # one-way hede -> bazouges later today
    "dave": "0D0D0D0D",  # suspended
    "erin": "0E0E0E0E",  # arrives one-way from bazouges with ami-3
}
UNKNOWN = "DEADBEEF"


def demo_key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"borne demo {label}".encode()).digest())


def public_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def demo_config(data_dir: Path, *, port: int = 8080, token_sha256: str | None = None, mqtt: str | None = None,
                plug: dict[str, Any] | None = None, reader: str = "simulated") -> Config:
    plug = plug or {"transport": "simulated", "poll_interval_s": 1.0}
    data: dict[str, Any] = {
        "station": {"id": STATION, "name": "Hédé — place de la mairie", "timezone": "Europe/Paris",
                    "trust_system_clock": "always"},
        "data_dir": str(data_dir),
        "bays": [
            {"id": "1", "vehicle": "ami-1", "plug": plug if "port" not in plug else plug},
            {"id": "2", "vehicle": "ami-2", "plug": dict(plug, port=plug["port"] + 1) if "port" in plug else plug},
        ],
        "reader": {"device": reader, "debounce_s": 3},
        "api": {"listen": "127.0.0.1", "port": port,
                "tokens": [{"name": "demo", "sha256": token_sha256}] if token_sha256 else []},
        "central": {"keys": [{"key_id": DEMO_KEY_ID, "public_key": public_b64(demo_key("central"))}],
                    "card_key": DEMO_CARD_KEY,
                    "issuer_keys": [{"key_id": DEMO_ISSUER_ID, "public_key": public_b64(demo_key("townhall"))}]},
        "policy": {"plug_in_alert_min": 5, "complete_after_min": 5},
    }
    if mqtt:
        data["mqtt"] = {"url": mqtt}
    return parse_config(data, source="<embedded demo config>")


def _rfc(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def roster_document(now: datetime, *, version: int = 1) -> bytes:
    key = DEMO_CARD_KEY.encode()
    members = []
    for name, uid in CARDS.items():
        members.append({
            "member_id": f"m-{name}",
            "status": "suspended" if name == "dave" else "active",
            "valid_from": _rfc(now - timedelta(days=30)),
            "valid_until": _rfc(now + timedelta(days=365)),
            "cards": [{"ref": card_ref(key, bytes.fromhex(uid)), "kind": "uid", "serial": 1}],
        })
    doc = {"type": "roster", "kind": "full", "version": version, "station_scope": ["*"],
           "issued_at": _rfc(now), "expires_at": _rfc(now + timedelta(days=14)), "members": members}
    return sign(doc, demo_key("central"), DEMO_KEY_ID)


def reservations_document(now: datetime, *, version: int = 1) -> bytes:
    day = now.replace(second=0, microsecond=0)
    items = [
        {"reservation_id": "r-alice", "member_id": "m-alice", "vehicle": "ami-1", "start": _rfc(day - timedelta(minutes=5)),
         "end": _rfc(day + timedelta(hours=2)), "pickup": STATION, "dropoff": STATION, "status": "confirmed"},
        {"reservation_id": "r-carol", "member_id": "m-carol", "vehicle": "ami-2", "start": _rfc(day + timedelta(hours=3)),
         "end": _rfc(day + timedelta(hours=4)), "pickup": STATION, "dropoff": OTHER, "status": "confirmed"},
        {"reservation_id": "r-erin", "member_id": "m-erin", "vehicle": "ami-3", "start": _rfc(day + timedelta(hours=4)),
         "end": _rfc(day + timedelta(hours=5)), "pickup": OTHER, "dropoff": STATION, "status": "confirmed"},
    ]
    doc = {"type": "reservations", "kind": "full", "version": version, "station_scope": [STATION],
           "issued_at": _rfc(now), "expires_at": _rfc(now + timedelta(days=2)), "reservations": items}
    return sign(doc, demo_key("central"), DEMO_KEY_ID)


def describe(event: dict[str, Any]) -> str | None:
    """One human line per journal event, for the demo's console."""
    t, d = event["type"], event["data"]
    who = event.get("member_id") or "?"
    car = event.get("vehicle") or ""
    bay = event.get("bay") or ""
    if t == "card.tapped":
        verdict = "ALLOWED" if d.get("decision") == "allowed" else "REFUSED"
        return f"tap        {who:<8} {verdict:<8} {d.get('reason')}" + (f" ({d['detail']})" if d.get("detail") else "")
    if t == "trip.started":
        return f"trip       {who:<8} takes {car} from bay {bay} ({d.get('kind')}, to {d.get('end_station')})"
    if t == "trip.ended":
        price = d.get("price_cents")
        cost = "price set by the central server" if price is None else f"{price / 100:.2f} {d.get('currency')}"
        mins = d.get("duration_s")
        dur = "" if mins is None else f" after {mins / 60:.0f} min"
        return f"return     {who:<8} brings {car} to bay {bay}{dur}: {cost}"
    if t == "charge.started":
        return f"charging   bay {bay} {car}: {d.get('power_w')} W"
    if t == "charge.completed":
        return f"charged    bay {bay} {car}: {d.get('wh')} Wh ({d.get('reason')})"
    if t in ("plug.fault", "charge.fault", "reader.fault", "vehicle.not_plugged", "trip.cancelled", "release.failed"):
        return f"ALERT      {t} bay {bay} {car} {d}"
    if t in ("roster.applied", "reservations.applied"):
        return f"sync       {t.split('.')[0]} v{d.get('version')} applied ({d.get('size')} entries)"
    if t in ("mode.changed", "charger.switched", "maintenance.release", "plug.recovered", "reader.recovered"):
        return f"station    {t} {d}"
    return None
