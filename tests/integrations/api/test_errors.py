"""Bad input is a 4xx with {error, detail}, never a 500."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.integrations.api.conftest import AUTH, MAX_BODY
from tests.integrations.api.fake import roster_payload, sign

JSON = {**AUTH, "Content-Type": "application/json"}


async def _error(resp, status: int) -> dict:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error", "detail"} and body["detail"]
    return body


@pytest.mark.parametrize(
    "path, method",
    [("/v1/roster", "PUT"), ("/v1/reservations", "PUT"), ("/v1/journal/ack", "POST"), ("/v1/commands/unlock", "POST")],
)
@pytest.mark.parametrize("body", [b'{"up_to": 1', b"", b"\xff\xfe", b"{'key_id': 1}", b"nul"])
async def test_malformed_json_is_400(client, path, method, body):
    err = await _error(await client.request(method, path, data=body, headers=JSON), 400)
    assert err["error"] == "bad_json"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"up_to": "5"}, "body.up_to"),
        ({"up_to": 1.5}, "body.up_to"),
        ({"up_to": -1}, "body.up_to"),
        ({"up_to": None}, "body.up_to"),
        ({}, "body.up_to"),
        ({"up_to": 1, "extra": True}, "body.extra"),
        ([1, 2], "body"),
        (7, "body"),
    ],
)
async def test_ack_schema_errors_are_422_naming_the_field(client, target, body, field):
    err = await _error(await client.post("/v1/journal/ack", json=body, headers=AUTH), 422)
    assert err["error"] == "invalid_request"
    assert err["detail"].startswith(f"{field}:")
    assert target.acked == 0


@pytest.mark.parametrize(
    "envelope, field",
    [
        ({"payload": "e30=", "signature": "AA=="}, "body.key_id"),
        ({"key_id": "k", "signature": "AA=="}, "body.payload"),
        ({"key_id": "k", "payload": "e30=", "signature": "%%%"}, "body.signature"),
        ({"key_id": "k", "payload": "not base64!", "signature": "AA=="}, "body.payload"),
        ({"key_id": 3, "payload": "e30=", "signature": "AA=="}, "body.key_id"),
        ({"key_id": "", "payload": "e30=", "signature": "AA=="}, "body.key_id"),
        ({"key_id": "k", "payload": "e30=", "signature": "AA==", "alg": "rsa"}, "body.alg"),
    ],
)
async def test_bad_envelope_is_422_invalid_envelope(client, envelope, field):
    err = await _error(await client.put("/v1/roster", json=envelope, headers=AUTH), 422)
    assert err["error"] == "invalid_envelope"
    assert err["detail"].startswith(f"{field}:")


@pytest.mark.parametrize(
    "query, field",
    [("after=x", "query.after"), ("after=-1", "query.after"), ("limit=0", "query.limit"), ("limit=100000", "query.limit"), ("limit=1.5", "query.limit")],
)
async def test_bad_journal_query_is_422(client, query, field):
    err = await _error(await client.get(f"/v1/journal?{query}", headers=AUTH), 422)
    assert err["detail"].startswith(f"{field}:")


async def test_unlock_needs_a_reservation_or_a_member(client, target):
    err = await _error(await client.post("/v1/commands/unlock", json={"request_id": "q1", "vehicle": "ami-1"}, headers=AUTH), 422)
    assert "reservation_id or member_id" in err["detail"]
    assert target.unlock_calls == []


async def test_twenty_megabytes_is_413_with_content_length(client, target):
    body = b"x" * (20 * 1024 * 1024)
    err = await _error(await client.put("/v1/roster", data=body, headers=JSON), 413)
    assert err["error"] == "body_too_large"
    assert target.versions["roster"] == 0


async def test_oversized_chunked_body_is_413(client):
    async def chunks():
        for _ in range(20):
            yield b"y" * (1024 * 1024)

    err = await _error(await client.put("/v1/roster", data=chunks(), headers=JSON), 413)
    assert err["error"] == "body_too_large"


async def test_a_body_at_the_limit_is_read(client):
    padded = (b'{"key_id": "unknown", "payload": "e30=", "signature": "AA=="' + b" " * MAX_BODY)[: MAX_BODY - 1] + b"}"
    assert len(padded) == MAX_BODY
    err = await _error(await client.put("/v1/roster", data=padded, headers=JSON), 422)
    assert err["error"] == "unknown_key"


async def test_large_document_is_validated_off_the_loop_and_applied(target, key):
    from aiohttp.test_utils import TestClient, TestServer

    from integrations.api import create_app
    from tests.integrations.api.conftest import api_config

    envelope = sign(roster_payload(1, members=8000), key)  # about 2.5 MiB on the wire
    body = json.dumps(envelope).encode()
    assert 2 * 1024 * 1024 < len(body) < 4 * 1024 * 1024
    app = create_app(target, api_config(max_body_bytes=4 * 1024 * 1024), version="0")
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as c:
        resp = await c.put("/v1/roster", data=body, headers=JSON)
        assert resp.status == 200, await resp.text()
    assert target.sizes["roster"] == 8000


async def test_server_keeps_serving_after_bad_input(client):
    await asyncio.gather(*(client.put("/v1/roster", data=b"{", headers=JSON) for _ in range(10)))
    assert (await client.get("/v1/status", headers=AUTH)).status == 200


async def test_a_bug_in_the_station_is_a_500_json(client, target, caplog):
    async def broken(after, limit):
        raise RuntimeError("boom")

    target.journal_page = broken
    err = await _error(await client.get("/v1/journal", headers=AUTH), 500)
    assert err == {"error": "internal", "detail": "the station failed to answer; see its log"}
    assert "boom" in caplog.text


async def test_storage_failure_is_503(client, target):
    from station.errors import StorageError

    async def full(up_to):
        raise StorageError("disk full")

    target.acknowledge = full
    err = await _error(await client.post("/v1/journal/ack", json={"up_to": 1}, headers=AUTH), 503)
    assert err == {"error": "unavailable", "detail": "disk full"}
