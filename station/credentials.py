"""Member credentials read from a card.

A card is never stored or sent by its UID: the roster names it by its *ref*,
the first 32 hex digits of HMAC-SHA256(card key, UID bytes), the card key
being a deployment secret.

Two kinds of card (``CardKind`` in the roster):

* ``uid``: the UID is the credential (MIFARE Classic, DESFire... read as is).
* ``signed``: an NTAG21x carrying one NDEF record of the NFC Forum external
  type ``borne.fr:card`` (TNF 0x04), whose payload is, in order::

      version      1 byte   = 1
      key_id       1 byte length (1..32) + UTF-8
      member_id    1 byte length (1..64) + UTF-8
      serial       4 bytes, unsigned big-endian
      uid          1 byte length (4, 7 or 10) + the card's UID
      signature    64 bytes, Ed25519 over b"borne.fr:card\\0" + all of the above

  signed by the town hall's issuing key ``key_id``. The UID inside binds the
  record to its chip: the record copied onto another card is refused. Other
  records in the message (a URI, say) are ignored; two card records are not.

This module is pure: it parses NDEF bytes itself (strictly) and never imports
nfcpy or ndeflib.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from station.errors import ConfigError, DomainError
from station.model import CardKind, CardPresented, Reason

CARD_RECORD_TYPE = b"borne.fr:card"  # NFC Forum external type, TNF 0x04
CARD_PAYLOAD_VERSION = 1
_SIGNING_PREFIX = CARD_RECORD_TYPE + b"\x00"
_SIG_LEN = 64
_UID_LENGTHS = (4, 7, 10)
MAX_KEY_ID_LEN = 32
MAX_MEMBER_ID_LEN = 64
MAX_SERIAL = 2**32 - 1
_MAX_RECORDS = 16

TNF_EMPTY, TNF_WELL_KNOWN, TNF_MEDIA, TNF_URI, TNF_EXTERNAL, TNF_UNKNOWN, TNF_UNCHANGED = range(7)


def card_ref(card_key: bytes, uid: bytes) -> str:
    return hmac.new(card_key, uid, hashlib.sha256).hexdigest()[:32]


def mask_uid(uid: bytes) -> str:
    """For logs: the first byte and the length, never the whole UID."""
    return f"{uid[:1].hex()}…({len(uid)}B)" if uid else "(empty)"


class MalformedCredential(DomainError):
    """NDEF bytes or a card record that do not follow the format."""


# --- NDEF messages (NFC Forum NDEF 1.0), strict ------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NdefRecord:
    tnf: int
    type: bytes
    id: bytes = b""
    payload: bytes = b""


def parse_ndef_message(data: bytes) -> tuple[NdefRecord, ...]:
    """Split an NDEF message into records; raise MalformedCredential on
    anything but a well-formed, unchunked message that ends exactly with its
    last (ME) record."""
    records: list[NdefRecord] = []
    view = memoryview(data)
    offset = 0

    def take(n: int, what: str) -> bytes:
        nonlocal offset
        if offset + n > len(view):
            raise MalformedCredential(f"ndef truncated in {what}")
        chunk = bytes(view[offset : offset + n])
        offset += n
        return chunk

    if not data:
        raise MalformedCredential("ndef message is empty")
    while True:
        header = take(1, "header")[0]
        mb, me, cf, sr, il, tnf = (
            bool(header & 0x80),
            bool(header & 0x40),
            bool(header & 0x20),
            bool(header & 0x10),
            bool(header & 0x08),
            header & 0x07,
        )
        if mb != (not records):
            raise MalformedCredential("ndef message-begin flag misplaced")
        if cf:
            raise MalformedCredential("chunked ndef records are not supported")
        if tnf in (TNF_UNCHANGED, 7):
            raise MalformedCredential(f"ndef record with tnf {tnf}")
        type_len = take(1, "type length")[0]
        payload_len = take(1, "payload length")[0] if sr else struct.unpack(">I", take(4, "payload length"))[0]
        id_len = take(1, "id length")[0] if il else 0
        if tnf == TNF_EMPTY and (type_len or payload_len or id_len):
            raise MalformedCredential("empty ndef record with content")
        if tnf == TNF_UNKNOWN and type_len:
            raise MalformedCredential("unknown-type ndef record with a type")
        if tnf in (TNF_WELL_KNOWN, TNF_MEDIA, TNF_URI, TNF_EXTERNAL) and not type_len:
            raise MalformedCredential(f"ndef record with tnf {tnf} and no type")
        rtype = take(type_len, "type")
        rid = take(id_len, "id")
        payload = take(payload_len, "payload")
        records.append(NdefRecord(tnf=tnf, type=rtype, id=rid, payload=payload))
        if me:
            break
        if len(records) >= _MAX_RECORDS:
            raise MalformedCredential("too many ndef records")
    if offset != len(view):
        raise MalformedCredential("bytes after the last ndef record")
    return tuple(records)


def encode_ndef_message(records: Iterable[NdefRecord]) -> bytes:
    items = list(records)
    if not items:
        raise ValueError("an NDEF message needs at least one record")
    out = bytearray()
    for i, rec in enumerate(items):
        if not 0 <= rec.tnf <= 6 or len(rec.type) > 255 or len(rec.id) > 255:
            raise ValueError("invalid NDEF record")
        short = len(rec.payload) < 256
        header = rec.tnf | (0x80 if i == 0 else 0) | (0x40 if i == len(items) - 1 else 0)
        header |= (0x10 if short else 0) | (0x08 if rec.id else 0)
        out.append(header)
        out.append(len(rec.type))
        out += bytes([len(rec.payload)]) if short else struct.pack(">I", len(rec.payload))
        if rec.id:
            out.append(len(rec.id))
        out += rec.type + rec.id + rec.payload
    return bytes(out)


# --- The signed card record ------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedCard:
    member_id: str
    serial: int
    key_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _CardPayload:
    card: SignedCard
    uid: bytes
    signed_part: bytes
    signature: bytes


def _short_text(value: str, limit: int, what: str) -> bytes:
    raw = value.encode("utf-8")
    if not 1 <= len(raw) <= limit:
        raise ValueError(f"{what} must be 1..{limit} UTF-8 bytes")
    return bytes([len(raw)]) + raw


def _card_body(key_id: str, member_id: str, serial: int, uid: bytes) -> bytes:
    if not 0 <= serial <= MAX_SERIAL:
        raise ValueError(f"serial must be 0..{MAX_SERIAL}")
    if len(uid) not in _UID_LENGTHS:
        raise ValueError("uid must be 4, 7 or 10 bytes")
    return (
        bytes([CARD_PAYLOAD_VERSION])
        + _short_text(key_id, MAX_KEY_ID_LEN, "key id")
        + _short_text(member_id, MAX_MEMBER_ID_LEN, "member id")
        + struct.pack(">I", serial)
        + bytes([len(uid)])
        + bytes(uid)
    )


def encode_signed_card(private_key: Ed25519PrivateKey, key_id: str, member_id: str, serial: int, uid: bytes) -> bytes:
    """The NDEF message (one ``borne.fr:card`` record) to write on the card."""
    body = _card_body(key_id, member_id, serial, uid)
    payload = body + private_key.sign(_SIGNING_PREFIX + body)
    return encode_ndef_message([NdefRecord(tnf=TNF_EXTERNAL, type=CARD_RECORD_TYPE, payload=payload)])


def _decode_card_payload(payload: bytes) -> _CardPayload:
    pos = 0

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(payload):
            raise MalformedCredential(f"card record truncated in {what}")
        chunk = payload[pos : pos + n]
        pos += n
        return chunk

    def text(limit: int, what: str) -> str:
        n = take(1, what)[0]
        if not 1 <= n <= limit:
            raise MalformedCredential(f"card record {what} length {n}")
        try:
            return take(n, what).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedCredential(f"card record {what} is not UTF-8") from None

    version = take(1, "version")[0]
    if version != CARD_PAYLOAD_VERSION:
        raise MalformedCredential(f"card record version {version}")
    key_id = text(MAX_KEY_ID_LEN, "key id")
    member_id = text(MAX_MEMBER_ID_LEN, "member id")
    (serial,) = struct.unpack(">I", take(4, "serial"))
    uid_len = take(1, "uid")[0]
    if uid_len not in _UID_LENGTHS:
        raise MalformedCredential(f"card record uid length {uid_len}")
    uid = take(uid_len, "uid")
    signed_part = payload[:pos]
    signature = take(_SIG_LEN, "signature")
    if pos != len(payload):
        raise MalformedCredential("bytes after the card record signature")
    return _CardPayload(
        card=SignedCard(member_id=member_id, serial=serial, key_id=key_id),
        uid=uid,
        signed_part=signed_part,
        signature=signature,
    )


# --- Reading a presented card ------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Credential:
    """What a presentation proves. ``uid_ref`` always; ``signed`` when a valid
    card record was found; ``error`` (INVALID_CREDENTIAL) when a card record
    was forged, garbled, for another UID, or the NDEF could not be read."""

    uid_ref: str
    signed: SignedCard | None = None
    error: Reason | None = None
    detail: str = ""


def read_credential(
    presented: CardPresented,
    *,
    card_key: bytes,
    issuer_keys: dict[str, Ed25519PublicKey],
) -> Credential:
    """Never raises for whatever bytes the card carried: the outcome is in
    ``signed`` / ``error`` / ``detail`` (which never contains the UID)."""
    uid_ref = card_ref(card_key, presented.uid)

    def invalid(detail: str) -> Credential:
        return Credential(uid_ref=uid_ref, error=Reason.INVALID_CREDENTIAL, detail=detail)

    if presented.ndef_error is not None:
        return invalid(f"ndef unreadable: {presented.ndef_error[:80]}")
    if not presented.ndef:
        return Credential(uid_ref=uid_ref, detail="uid only")
    try:
        records = parse_ndef_message(presented.ndef)
    except MalformedCredential as err:
        return invalid(str(err))
    ours = [r for r in records if r.tnf == TNF_EXTERNAL and r.type.lower() == CARD_RECORD_TYPE]
    if not ours:
        return Credential(uid_ref=uid_ref, detail="uid only (no card record)")
    if len(ours) > 1:
        return invalid("several card records")
    try:
        decoded = _decode_card_payload(ours[0].payload)
    except MalformedCredential as err:
        return invalid(str(err))
    key = issuer_keys.get(decoded.card.key_id)
    if key is None:
        return invalid(f"unknown issuer key {decoded.card.key_id[:32]!r}")
    try:
        key.verify(decoded.signature, _SIGNING_PREFIX + decoded.signed_part)
    except InvalidSignature:
        return invalid("bad signature")
    if not hmac.compare_digest(decoded.uid, bytes(presented.uid)):
        return invalid("card record belongs to another card")
    return Credential(uid_ref=uid_ref, signed=decoded.card, detail="signed card")


def check_card(
    credential: Credential,
    roster_card_kind: CardKind | None,
    roster_serial: int | None,
    *,
    roster_member_id: str | None = None,
) -> Reason | None:
    """The card rules, given the roster's entry for ``credential.uid_ref``
    (kind None: the roster does not know the card). None means the card is
    good; the member and reservation rules come after.

    * unknown card: INVALID_CREDENTIAL if it carried a bad record, else UNKNOWN_CARD;
    * ``uid`` card: the UID is enough (any NDEF on it is ignored);
    * ``signed`` card: a bad or unreadable record → INVALID_CREDENTIAL, no
      record (a bare UID copy) → SIGNED_CARD_REQUIRED, a serial other than the
      roster's current one → CARD_REVOKED, a record for another member than
      the roster's (when ``roster_member_id`` is given) → INVALID_CREDENTIAL.
    """
    if roster_card_kind is None:
        return credential.error or Reason.UNKNOWN_CARD
    if roster_card_kind == CardKind.UID:
        return None
    if credential.error is not None:
        return credential.error
    signed = credential.signed
    if signed is None:
        return Reason.SIGNED_CARD_REQUIRED
    if roster_serial is None or signed.serial != roster_serial:
        return Reason.CARD_REVOKED
    if roster_member_id is not None and signed.member_id != roster_member_id:
        return Reason.INVALID_CREDENTIAL
    return None


# --- Keys ----------------------------------------------------------------------


class _KeyEntry(Protocol):
    key_id: str
    public_key: str


def load_issuer_keys(entries: Iterable[_KeyEntry]) -> dict[str, Ed25519PublicKey]:
    """``central.issuer_keys`` (base64 of the 32 raw bytes) → public keys."""
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in entries:
        try:
            raw = base64.b64decode(entry.public_key, validate=True)
            if len(raw) != 32:
                raise ValueError("not 32 bytes")
            keys[entry.key_id] = Ed25519PublicKey.from_public_bytes(raw)
        except (binascii.Error, ValueError) as err:
            raise ConfigError(f"central.issuer_keys: key {entry.key_id!r}: not a base64 Ed25519 public key ({err})") from None
        if len(entry.key_id.encode("utf-8")) > MAX_KEY_ID_LEN or not entry.key_id:
            raise ConfigError(f"central.issuer_keys: key id {entry.key_id!r} must be 1..{MAX_KEY_ID_LEN} bytes")
    return keys
