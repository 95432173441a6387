"""PUT /v1/roster and /v1/reservations against a realistic fake."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.integrations.api.conftest import AUTH
from tests.integrations.api.fake import STATION, reservations_payload, roster_payload, sign


async def _put(client, path, envelope):
    resp = await client.put(path, json=envelope, headers=AUTH)
    return resp.status, await resp.json()


async def test_full_then_delta_roster(client, target, key):
    assert await _put(client, "/v1/roster", sign(roster_payload(3, members=5), key)) == (
        200,
        {"type": "roster", "version": 3, "applied": True, "part": None, "parts": None, "size": 5},
    )
    status, body = await _put(client, "/v1/roster", sign(roster_payload(4, members=1, kind="delta", base_version=3), key))
    assert status == 200 and body["applied"] and body["version"] == 4
    assert target.versions["roster"] == 4


async def test_delta_on_another_base_is_409(client, target, key):
    await _put(client, "/v1/roster", sign(roster_payload(3), key))
    status, body = await _put(client, "/v1/roster", sign(roster_payload(5, kind="delta", base_version=4), key))
    assert status == 409
    assert body["error"] == "base_mismatch"
    assert "station has 3" in body["detail"]
    assert target.versions["roster"] == 3


@pytest.mark.parametrize(
    "make, code",
    [
        (lambda key: sign(roster_payload(1), Ed25519PrivateKey.generate()), "bad_signature"),
        (lambda key: sign(roster_payload(1), key, key_id="retired"), "unknown_key"),
        (lambda key: sign(roster_payload(1, station_scope=["bazouges"]), key), "wrong_scope"),
        (lambda key: sign(roster_payload(1, expires_at="2020-01-01T00:00:00Z"), key), "expired"),
        (lambda key: sign(reservations_payload(1), key), "wrong_type"),
        (lambda key: sign(b"not json", key), "bad_payload"),
    ],
    ids=["bad_signature", "unknown_key", "wrong_scope", "expired", "wrong_type", "bad_payload"],
)
async def test_refused_roster_is_422_with_the_reason(client, target, key, make, code):
    status, body = await _put(client, "/v1/roster", make(key))
    assert (status, body["error"]) == (422, code)
    assert target.versions["roster"] == 0


async def test_duplicate_cards_and_lower_version_are_refused(client, target, key):
    dup = roster_payload(2)
    dup["members"][1]["cards"] = dup["members"][0]["cards"]
    assert (await _put(client, "/v1/roster", sign(dup, key)))[1]["error"] == "duplicate_card"
    await _put(client, "/v1/roster", sign(roster_payload(5), key))
    status, body = await _put(client, "/v1/roster", sign(roster_payload(4), key))
    assert (status, body["error"]) == (422, "stale_version")
    assert target.versions["roster"] == 5


async def test_payload_bytes_reach_the_station_untouched(client, target, key):
    raw = b'{"type":"reservations","kind":"full","version":1,"station_scope":["*"],"expires_at":"2030-01-01T00:00:00Z","reservations":[]}'
    envelope = sign(raw, key)
    seen = []
    real = target.apply_document

    async def spy(body, *, expected_type=None):
        seen.append((body, expected_type))
        return await real(body, expected_type=expected_type)

    target.apply_document = spy
    status, body = await _put(client, "/v1/reservations", envelope)
    assert status == 200 and body["type"] == "reservations"
    sent, expected = seen[0]
    assert expected == "reservations"
    import json

    assert base64.b64decode(json.loads(sent)["payload"]) == raw


async def test_reservations_in_parts_apply_on_the_last(client, target, key):
    answers = []
    for part in (1, 2, 3):
        payload = reservations_payload(7, part=part, parts=3)
        status, body = await _put(client, "/v1/reservations", sign(payload, key))
        assert status == 200
        answers.append((body["applied"], body["part"], body["parts"]))
    assert answers == [(False, 1, 3), (False, 2, 3), (True, 3, 3)]
    assert target.versions["reservations"] == 7
    assert target.sizes["reservations"] == 3


async def test_status_shows_applied_versions(client, key):
    await _put(client, "/v1/roster", sign(roster_payload(2, members=4), key))
    await _put(client, "/v1/reservations", sign(reservations_payload(9), key))
    status = await (await client.get("/v1/status", headers=AUTH)).json()
    assert status["station"] == STATION
    assert status["roster"]["version"] == 2 and status["roster"]["size"] == 4
    assert status["roster"]["expires_at"] == "2026-05-08T09:00:00Z"
    assert status["reservations"] == {"version": 9}
