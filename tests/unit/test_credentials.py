"""Card credentials: the NDEF parser, the signed card record, the card rules."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from station.credentials import (
    CARD_RECORD_TYPE,
    TNF_EXTERNAL,
    TNF_URI,
    TNF_WELL_KNOWN,
    Credential,
    MalformedCredential,
    NdefRecord,
    SignedCard,
    card_ref,
    check_card,
    encode_ndef_message,
    encode_signed_card,
    load_issuer_keys,
    parse_ndef_message,
    read_credential,
)
from station.errors import ConfigError
from station.model import CardKind, CardPresented, Reason

CARD_KEY = b"deployment-card-key"
UID = bytes.fromhex("04A1B2C3D4E5F6")
ISSUER = Ed25519PrivateKey.generate()
KEYS = {"th-1": ISSUER.public_key()}
SIGNED = encode_signed_card(ISSUER, "th-1", "M-0042", 7, UID)


def presented(ndef: bytes | None = None, uid: bytes = UID, ndef_error: str | None = None) -> CardPresented:
    return CardPresented(uid=uid, ndef=ndef, ndef_error=ndef_error)


def read(ndef: bytes | None = None, uid: bytes = UID, ndef_error: str | None = None) -> Credential:
    return read_credential(presented(ndef, uid, ndef_error), card_key=CARD_KEY, issuer_keys=KEYS)


def payload_of(message: bytes) -> bytes:
    (record,) = parse_ndef_message(message)
    return record.payload


def resign(payload_body: bytes, key: Ed25519PrivateKey = ISSUER) -> bytes:
    payload = payload_body + key.sign(CARD_RECORD_TYPE + b"\x00" + payload_body)
    return encode_ndef_message([NdefRecord(tnf=TNF_EXTERNAL, type=CARD_RECORD_TYPE, payload=payload)])


# --- valid cards -----------------------------------------------------------------


def test_signed_card_is_read() -> None:
    cred = read(SIGNED)
    assert cred.error is None
    assert cred.signed == SignedCard(member_id="M-0042", serial=7, key_id="th-1")
    assert cred.uid_ref == card_ref(CARD_KEY, UID)
    assert check_card(cred, CardKind.SIGNED, 7) is None
    assert check_card(cred, CardKind.SIGNED, 7, roster_member_id="M-0042") is None


def test_record_layout_is_the_documented_one() -> None:
    assert SIGNED[:16] == bytes([0xD4, len(CARD_RECORD_TYPE), len(payload_of(SIGNED))]) + CARD_RECORD_TYPE
    body = payload_of(SIGNED)
    assert body[0] == 1 and body[1:6] == b"\x04th-1" and body[6:13] == b"\x06M-0042"
    assert body[13:17] == (7).to_bytes(4, "big") and body[17:25] == b"\x07" + UID
    assert len(body) == 25 + 64
    assert len(SIGNED) <= 144  # fits an NTAG213 with the TLV around it


def test_ndeflib_reads_what_we_write_and_we_read_what_it_writes() -> None:
    ndef = pytest.importorskip("ndef")
    (record,) = list(ndef.message_decoder(SIGNED))
    assert record.type == "urn:nfc:ext:borne.fr:card"
    theirs = b"".join(
        ndef.message_encoder([ndef.UriRecord("https://borne.example/"), ndef.Record("urn:nfc:ext:borne.fr:card", "", payload_of(SIGNED))])
    )
    cred = read(theirs)
    assert cred.signed is not None and cred.signed.member_id == "M-0042"


def test_other_records_are_ignored() -> None:
    uri = NdefRecord(tnf=TNF_WELL_KNOWN, type=b"U", payload=b"\x04borne.example")
    (ours,) = parse_ndef_message(SIGNED)
    assert read(encode_ndef_message([uri, ours])).signed is not None
    only_uri = read(encode_ndef_message([uri]))
    assert only_uri.signed is None and only_uri.error is None


def test_record_type_is_case_insensitive() -> None:
    (ours,) = parse_ndef_message(SIGNED)
    upper = NdefRecord(tnf=TNF_EXTERNAL, type=CARD_RECORD_TYPE.upper(), payload=ours.payload)
    assert read(encode_ndef_message([upper])).signed is not None


def test_uid_only_card() -> None:
    for cred in (read(None), read(b"")):
        assert cred.signed is None and cred.error is None
        assert check_card(cred, CardKind.UID, 1) is None
        assert check_card(cred, None, None) is Reason.UNKNOWN_CARD


def test_long_payload_uses_the_four_byte_length() -> None:
    big = NdefRecord(tnf=TNF_URI, type=b"x", payload=bytes(300))
    message = encode_ndef_message([big])
    assert message[0] & 0x10 == 0
    assert parse_ndef_message(message) == (big,)


# --- refused cards -------------------------------------------------------------------


def test_forged_signature() -> None:
    forger = Ed25519PrivateKey.generate()
    cred = read(encode_signed_card(forger, "th-1", "M-0042", 7, UID))
    assert cred.error is Reason.INVALID_CREDENTIAL and cred.signed is None
    assert cred.detail == "bad signature"
    assert check_card(cred, CardKind.SIGNED, 7) is Reason.INVALID_CREDENTIAL
    assert check_card(cred, None, None) is Reason.INVALID_CREDENTIAL


def test_unknown_issuer_key() -> None:
    cred = read(encode_signed_card(ISSUER, "th-9", "M-0042", 7, UID))
    assert cred.error is Reason.INVALID_CREDENTIAL and "unknown issuer key" in cred.detail


def test_record_copied_onto_another_card() -> None:
    cred = read(SIGNED, uid=bytes.fromhex("04A1B2C3D4E5F7"))
    assert cred.error is Reason.INVALID_CREDENTIAL
    assert "another card" in cred.detail and "f7" not in cred.detail.lower()


def test_bare_uid_copy_of_a_signed_card() -> None:
    assert check_card(read(None), CardKind.SIGNED, 7) is Reason.SIGNED_CARD_REQUIRED


def test_revoked_serial() -> None:
    assert check_card(read(SIGNED), CardKind.SIGNED, 8) is Reason.CARD_REVOKED
    assert check_card(read(SIGNED), CardKind.SIGNED, None) is Reason.CARD_REVOKED


def test_record_for_another_member() -> None:
    assert check_card(read(SIGNED), CardKind.SIGNED, 7, roster_member_id="M-0043") is Reason.INVALID_CREDENTIAL


def test_unreadable_ndef() -> None:
    cred = read(None, ndef_error="type 2 read failed")
    assert cred.error is Reason.INVALID_CREDENTIAL and cred.detail.startswith("ndef unreadable")
    assert check_card(cred, CardKind.SIGNED, 7) is Reason.INVALID_CREDENTIAL
    assert check_card(cred, CardKind.UID, 7) is None  # a UID card needs no NDEF


def test_uid_card_with_a_bad_record_is_still_a_uid_card() -> None:
    forged = read(encode_signed_card(Ed25519PrivateKey.generate(), "th-1", "M-1", 1, UID))
    assert check_card(forged, CardKind.UID, 1) is None


def test_two_card_records() -> None:
    (ours,) = parse_ndef_message(SIGNED)
    assert read(encode_ndef_message([ours, ours])).detail == "several card records"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"\x02\x04th-1\x06M-0042\x00\x00\x00\x07\x07" + UID, "version"),
        (b"\x01\x00\x06M-0042\x00\x00\x00\x07\x07" + UID, "key id length"),
        (b"\x01\x04th-1\x06M-\xff\xfe42\x00\x00\x00\x07\x07" + UID, "not UTF-8"),
        (b"\x01\x04th-1\x06M-0042\x00\x00\x00\x07\x05" + UID[:5], "uid length"),
    ],
)
def test_malformed_card_record(body: bytes, detail: str) -> None:
    cred = read(resign(body))
    assert cred.error is Reason.INVALID_CREDENTIAL and detail in cred.detail


def test_truncated_and_padded_records() -> None:
    payload = payload_of(SIGNED)
    short = encode_ndef_message([NdefRecord(tnf=TNF_EXTERNAL, type=CARD_RECORD_TYPE, payload=payload[:-1])])
    long = encode_ndef_message([NdefRecord(tnf=TNF_EXTERNAL, type=CARD_RECORD_TYPE, payload=payload + b"\x00")])
    assert "truncated" in read(short).detail
    assert "after the card record signature" in read(long).detail


@pytest.mark.parametrize(
    ("message", "detail"),
    [
        (SIGNED[:-1], "truncated"),
        (SIGNED + b"\x00", "after the last"),
        (bytes([SIGNED[0] & ~0x80]) + SIGNED[1:], "message-begin"),
        (bytes([SIGNED[0] | 0x20]) + SIGNED[1:], "chunked"),
        (bytes([(SIGNED[0] & 0xF8) | 0x07]) + SIGNED[1:], "tnf 7"),
        (b"\xd0\x01\x00", "empty ndef record with content"),
        (b"\xd1\x00\x00", "no type"),
        (b"\x91\x01\x00U", "truncated"),  # no message-end record
    ],
)
def test_malformed_ndef(message: bytes, detail: str) -> None:
    with pytest.raises(MalformedCredential, match=detail):
        parse_ndef_message(message)
    cred = read(message)
    assert cred.error is Reason.INVALID_CREDENTIAL and detail in cred.detail


def test_encoder_refuses_what_the_format_cannot_hold() -> None:
    with pytest.raises(ValueError):
        encode_signed_card(ISSUER, "th-1", "M" * 65, 1, UID)
    with pytest.raises(ValueError):
        encode_signed_card(ISSUER, "th-1", "M", 2**32, UID)
    with pytest.raises(ValueError):
        encode_signed_card(ISSUER, "th-1", "M", 1, UID[:5])


# --- keys ------------------------------------------------------------------------------------


@dataclass
class Entry:
    key_id: str
    public_key: str


def test_load_issuer_keys() -> None:
    raw = ISSUER.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    keys = load_issuer_keys([Entry("th-1", base64.b64encode(raw).decode())])
    assert read_credential(presented(SIGNED), card_key=CARD_KEY, issuer_keys=keys).signed is not None
    for bad in ("not base64!", base64.b64encode(raw[:31]).decode()):
        with pytest.raises(ConfigError, match="th-1"):
            load_issuer_keys([Entry("th-1", bad)])


# --- fuzzing: whatever the card carries, a reason and never an exception ----------------------

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300), st.binary(max_size=10))
def test_random_bytes_never_raise(data: bytes, uid: bytes) -> None:
    cred = read(data, uid=uid)
    assert cred.signed is None
    assert cred.error in (None, Reason.INVALID_CREDENTIAL)
    assert check_card(cred, CardKind.SIGNED, 7) in (Reason.INVALID_CREDENTIAL, Reason.SIGNED_CARD_REQUIRED)


record_st = st.builds(
    NdefRecord,
    tnf=st.sampled_from([1, 2, 3, 4, 5]),
    type=st.one_of(st.just(CARD_RECORD_TYPE), st.binary(min_size=1, max_size=20)),
    id=st.binary(max_size=4),
    payload=st.binary(max_size=300),
).filter(lambda r: r.tnf != 5 or r.type == b"")


@FUZZ
@given(st.lists(st.one_of(record_st, st.builds(NdefRecord, tnf=st.just(5), type=st.just(b""), payload=st.binary(max_size=40))), min_size=1, max_size=5))
def test_well_formed_messages_with_random_records(records: list[NdefRecord]) -> None:
    message = encode_ndef_message(records)
    assert parse_ndef_message(message) == tuple(records)
    cred = read(message)
    assert cred.signed is None
    assert cred.error in (None, Reason.INVALID_CREDENTIAL)


@FUZZ
@given(st.data())
def test_a_mutated_signed_card_is_never_another_valid_card(data: st.DataObject) -> None:
    message = bytearray(SIGNED)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(message) - 1))
        message[index] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(message)))
        message = message[:cut] + bytearray(data.draw(st.binary(max_size=8)))
    cred = read(bytes(message))
    if bytes(message) != SIGNED:
        assert cred.signed in (None, read(SIGNED).signed)
        if cred.signed is None:
            assert check_card(cred, CardKind.SIGNED, 7) in (Reason.INVALID_CREDENTIAL, Reason.SIGNED_CARD_REQUIRED)


@FUZZ
@given(
    member=st.text(min_size=1, max_size=20).filter(lambda s: len(s.encode()) <= 64),
    serial=st.integers(0, 2**32 - 1),
    uid=st.sampled_from([4, 7, 10]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
)
def test_round_trip(member: str, serial: int, uid: bytes) -> None:
    cred = read(encode_signed_card(ISSUER, "th-1", member, serial, uid), uid=uid)
    assert cred.signed == SignedCard(member_id=member, serial=serial, key_id="th-1")
