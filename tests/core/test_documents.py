"""Signed roster and reservations documents: all or nothing, old roster kept."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest

from station.credentials import card_ref
from station.demo import CARDS, DEMO_CARD_KEY, DEMO_KEY_ID, demo_key
from station.documents import sign
from station.errors import DocumentRejected
from station.model import CardPresented, Reason
from tests.conftest import Rig

KEY = demo_key("central")


def _rfc(dt: Any) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def member(mid: str, uid: str, *, status: str = "active", serial: int = 1, kind: str = "uid") -> dict[str, Any]:
    return {"member_id": mid, "status": status, "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z",
            "cards": [{"ref": card_ref(DEMO_CARD_KEY.encode(), bytes.fromhex(uid)), "kind": kind, "serial": serial}]}


def roster(rig: Rig, version: int, members: list[dict[str, Any]], *, kind: str = "full", key: Any = KEY,
           key_id: str = DEMO_KEY_ID, **extra: Any) -> bytes:
    now = rig.clock.now()
    doc = {"type": "roster", "kind": kind, "version": version, "station_scope": ["hede"], "issued_at": _rfc(now),
           "expires_at": _rfc(now + timedelta(days=7)), "members": members, **extra}
    return sign(doc, key, key_id)


async def tap(rig: Rig, uid: str) -> Reason:
    rig.station.gate._seen.clear()  # tests tap the same card repeatedly
    decision = await rig.station.on_card(CardPresented(uid=bytes.fromhex(uid)))
    assert decision is not None
    return decision.reason


async def reject(rig: Rig, body: bytes, code: str, *, expected: str = "roster") -> DocumentRejected:
    before = rig.station.roster.info
    with pytest.raises(DocumentRejected) as info:
        await rig.station.apply_document(body, expected_type=expected)
    assert info.value.code == code, info.value
    assert rig.station.roster.info == before  # the old roster still answers
    return info.value


async def test_full_roster_replaces_the_old_one(rig: Rig) -> None:
    summary = await rig.station.apply_document(roster(rig, 2, [member("m-zoe", "0F0F0F0F")]), expected_type="roster")
    assert summary["applied"] and summary["swapped"]
    assert rig.station.roster.info.version == 2 and rig.station.roster.info.size == 1  # type: ignore[union-attr]
    assert await tap(rig, "0F0F0F0F") is Reason.WALK_UP
    assert await tap(rig, CARDS["bob"]) is Reason.UNKNOWN_CARD
    assert rig.last("roster.applied")["data"]["version"] == 2  # type: ignore[index]


async def test_delta_adds_changes_and_removes(rig: Rig) -> None:
    body = roster(rig, 2, [member("m-bob", CARDS["bob"], status="suspended"), member("m-zoe", "0F0F0F0F")],
                  kind="delta", base_version=1, removed=["m-carol"])
    summary = await rig.station.apply_document(body, expected_type="roster")
    assert summary["applied"] and not summary["swapped"]
    assert rig.station.roster.info.version == 2 and rig.station.roster.info.size == 5  # type: ignore[union-attr]
    assert await tap(rig, CARDS["bob"]) is Reason.MEMBER_SUSPENDED
    assert await tap(rig, CARDS["carol"]) is Reason.UNKNOWN_CARD


async def test_delta_on_another_base_is_a_conflict(rig: Rig) -> None:
    err = await reject(rig, roster(rig, 5, [], kind="delta", base_version=3), "base_mismatch")
    assert err.conflict


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda rig: roster(rig, 2, [], key=demo_key("intruder")), "bad_signature"),
        (lambda rig: roster(rig, 2, [], key_id="who-is-this"), "unknown_key"),
        (lambda rig: roster(rig, 1, []), None),  # same version: a no-op, not an error
        (lambda rig: roster(rig, 2, [member("a", "01020304"), member("b", "01020304")]), "duplicate_card"),
        (lambda rig: roster(rig, 2, [member("a", "01020304"), member("a", "05060708")]), "duplicate_member"),
        (lambda rig: roster(rig, 2, [{"member_id": "x", "status": "boss"}]), "invalid_payload"),
        (lambda rig: roster(rig, 2, [], station_scope=["bazouges"]), "wrong_scope"),
        (lambda rig: roster(rig, 2, [], expires_at="2026-01-01T00:00:00Z"), "expired"),
        (lambda rig: roster(rig, 2, [])[:-20], "invalid_json"),
        (lambda rig: b'{"key_id": 1}', "invalid_envelope"),
    ],
)
async def test_bad_documents_are_refused_and_nothing_changes(rig: Rig, mutate: Any, code: str | None) -> None:
    body = mutate(rig)
    if code is None:
        summary = await rig.station.apply_document(body, expected_type="roster")
        assert not summary["applied"]
        return
    await reject(rig, body, code)
    assert await tap(rig, CARDS["bob"]) is Reason.WALK_UP


async def test_lower_version_is_refused(rig: Rig) -> None:
    await rig.station.apply_document(roster(rig, 7, [member("m-bob", CARDS["bob"])]), expected_type="roster")
    await reject(rig, roster(rig, 6, []), "lower_version")


async def test_tampered_payload_is_refused(rig: Rig) -> None:
    envelope = json.loads(roster(rig, 2, [member("m-eve", "0E0E0E01")]))
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["members"][0]["status"] = "active"
    payload["version"] = 3
    envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    await reject(rig, json.dumps(envelope).encode(), "bad_signature")


async def test_reservations_document_on_the_roster_route_is_refused(rig: Rig) -> None:
    from station.demo import reservations_document

    await reject(rig, reservations_document(rig.clock.now(), version=2), "wrong_type")


async def test_parts_apply_atomically_when_the_last_arrives(rig: Rig) -> None:
    people = [member(f"m-{i}", f"1{i:07X}") for i in range(30)]
    parts = [roster(rig, 9, people[i * 10:(i + 1) * 10], part=i + 1, parts=3) for i in range(3)]
    first = await rig.station.apply_document(parts[0], expected_type="roster")
    assert not first["applied"] and first["received"] == 1
    assert rig.station.roster.info.version == 1  # type: ignore[union-attr]
    assert await tap(rig, CARDS["bob"]) is Reason.WALK_UP  # old roster answers meanwhile
    await rig.station.apply_document(parts[2], expected_type="roster")
    again = await rig.station.apply_document(parts[2], expected_type="roster")  # a retry is harmless
    assert again["received"] == 2
    done = await rig.station.apply_document(parts[1], expected_type="roster")
    assert done["applied"] and rig.station.roster.info.size == 30  # type: ignore[union-attr]
    assert await tap(rig, "10000005") is Reason.NO_VEHICLE  # known now; bob has the free car


async def test_a_part_of_another_version_discards_the_staging(rig: Rig) -> None:
    people = [member(f"m-{i}", f"2{i:07X}") for i in range(4)]
    await rig.station.apply_document(roster(rig, 4, people[:2], part=1, parts=2), expected_type="roster")
    await rig.station.apply_document(roster(rig, 5, people[:2], part=1, parts=2), expected_type="roster")
    done = await rig.station.apply_document(roster(rig, 5, people[2:], part=2, parts=2), expected_type="roster")
    assert done["applied"] and rig.station.roster.info.version == 5  # type: ignore[union-attr]


async def test_duplicate_across_parts_poisons_the_version(rig: Rig) -> None:
    await rig.station.apply_document(roster(rig, 4, [member("a", "30000001")], part=1, parts=2), expected_type="roster")
    await reject(rig, roster(rig, 4, [member("b", "30000001")], part=2, parts=2), "duplicate_card")
    assert not (rig.station.data_dir / "roster-build.db").exists()


async def test_reservations_delta_and_conflict(rig: Rig) -> None:
    now = rig.clock.now()
    doc = {"type": "reservations", "kind": "delta", "version": 2, "base_version": 1, "station_scope": ["hede"],
           "issued_at": _rfc(now), "expires_at": _rfc(now + timedelta(days=1)), "removed": ["r-alice"],
           "reservations": [{"reservation_id": "r-bob", "member_id": "m-bob", "vehicle": "ami-1",
                             "start": _rfc(now), "end": _rfc(now + timedelta(hours=1)), "pickup": "hede",
                             "dropoff": "hede", "status": "confirmed"}]}
    summary = await rig.station.apply_document(sign(doc, KEY, DEMO_KEY_ID), expected_type="reservations")
    assert summary["applied"] and rig.station.snapshot().reservations_version == 2
    assert await tap(rig, CARDS["alice"]) is Reason.WALK_UP  # her reservation is gone; ami-2 is free
    assert await tap(rig, CARDS["bob"]) is Reason.RESERVATION
    with pytest.raises(DocumentRejected) as info:
        await rig.station.apply_document(sign(doc, KEY, DEMO_KEY_ID), expected_type="reservations")
    assert info.value.conflict
