"""Signed documents from the central server: roster and reservations.

An envelope is ``{"key_id", "payload": base64(bytes), "signature":
base64(Ed25519 signature of those exact bytes)}``; the payload is UTF-8 JSON
with ``type``, ``kind`` (full|delta), ``version``, ``base_version`` (delta),
``station_scope``, ``issued_at``, ``expires_at`` and, for a full document sent
in parts, ``part`` and ``parts``. Verification happens before any parsing of
the entries; nothing is written for a document that fails it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from station.errors import DocumentRejected

DOCUMENT_TYPES = ("roster", "reservations")


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    type: str
    kind: str
    version: int
    base_version: int | None
    station_scope: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    part: int
    parts: int


def parse_time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise DocumentRejected("invalid_payload", f"{field} must be an RFC 3339 string")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise DocumentRejected("invalid_payload", f"{field} is not an RFC 3339 time: {value[:40]!r}") from None
    if dt.tzinfo is None:
        raise DocumentRejected("invalid_payload", f"{field} has no UTC offset")
    return dt


def public_key(b64: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(b64, validate=True))


def verify(body: bytes, keys: dict[str, bytes]) -> tuple[dict[str, Any], Header]:
    """Check the envelope and its signature; return the payload and header.

    ``keys`` maps key ids to raw 32-byte Ed25519 public keys.
    """
    try:
        envelope = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DocumentRejected("invalid_json", f"the body is not JSON: {err}") from None
    if not isinstance(envelope, dict):
        raise DocumentRejected("invalid_envelope", "expected an object with key_id, payload and signature")
    for field in ("key_id", "payload", "signature"):
        if not isinstance(envelope.get(field), str):
            raise DocumentRejected("invalid_envelope", f"{field} must be a string")
    raw_key = keys.get(envelope["key_id"])
    if raw_key is None:
        raise DocumentRejected("unknown_key", f"key {envelope['key_id'][:64]!r} is not trusted by this station")
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        signature = base64.b64decode(envelope["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise DocumentRejected("invalid_envelope", "payload and signature must be base64") from None
    try:
        Ed25519PublicKey.from_public_bytes(raw_key).verify(signature, payload)
    except InvalidSignature:
        raise DocumentRejected("bad_signature", "the signature does not verify with key " + envelope["key_id"]) from None
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DocumentRejected("invalid_payload", f"the payload is not UTF-8 JSON: {err}") from None
    if not isinstance(doc, dict):
        raise DocumentRejected("invalid_payload", "the payload must be a JSON object")
    return doc, header(doc)


def header(doc: dict[str, Any]) -> Header:
    type_ = doc.get("type")
    if type_ not in DOCUMENT_TYPES:
        raise DocumentRejected("invalid_payload", f"type must be one of {', '.join(DOCUMENT_TYPES)}")
    kind = doc.get("kind")
    if kind not in ("full", "delta"):
        raise DocumentRejected("invalid_payload", "kind must be full or delta")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version <= 0:
        raise DocumentRejected("invalid_payload", "version must be an integer > 0")
    base = doc.get("base_version")
    if kind == "delta":
        if not isinstance(base, int) or isinstance(base, bool) or base < 0:
            raise DocumentRejected("invalid_payload", "a delta needs base_version (integer >= 0)")
        if version <= base:
            raise DocumentRejected("invalid_payload", "a delta's version must be above its base_version")
    scope = doc.get("station_scope")
    if not isinstance(scope, list) or not scope or not all(isinstance(s, str) for s in scope):
        raise DocumentRejected("invalid_payload", "station_scope must be a non-empty list of station ids")
    part, parts = doc.get("part", 1), doc.get("parts", 1)
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (part, parts)) or not 1 <= part <= parts:
        raise DocumentRejected("invalid_payload", "part and parts must be integers with 1 <= part <= parts")
    if parts > 1 and kind != "full":
        raise DocumentRejected("invalid_payload", "only a full document may be sent in parts")
    return Header(
        type=type_, kind=kind, version=version, base_version=base if kind == "delta" else None,
        station_scope=tuple(scope), issued_at=parse_time(doc.get("issued_at"), "issued_at"),
        expires_at=parse_time(doc.get("expires_at"), "expires_at"), part=part, parts=parts,
    )


def check_applicable(head: Header, *, expected_type: str | None, station_id: str, now: datetime) -> None:
    if expected_type is not None and head.type != expected_type:
        raise DocumentRejected("wrong_type", f"expected a {expected_type} document, got {head.type}")
    if "*" not in head.station_scope and station_id not in head.station_scope:
        raise DocumentRejected("wrong_scope", f"station {station_id} is not in the document's scope")
    if head.expires_at <= now:
        raise DocumentRejected("expired", f"the document expired at {head.expires_at.isoformat()}")


def sign(doc: dict[str, Any], key: Ed25519PrivateKey, key_id: str) -> bytes:
    """Build a signed envelope (for provisioning, the demo and tests)."""
    payload = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return json.dumps(
        {
            "key_id": key_id,
            "payload": base64.b64encode(payload).decode(),
            "signature": base64.b64encode(key.sign(payload)).decode(),
        }
    ).encode()
