"""Every route but /healthz needs a valid bearer token."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from integrations.api import create_app
from tests.integrations.api.conftest import AUTH, OTHER_TOKEN, api_config
from tests.integrations.api.fake import FakeSyncTarget


def _routes() -> list[tuple[str, str]]:
    app = create_app(FakeSyncTarget({}), api_config(), version="0")
    return sorted({(r.method, r.resource.canonical) for r in app.router.routes()})


PROTECTED = [(m, p) for m, p in _routes() if p != "/healthz"]
BAD_HEADERS = {
    "none": {},
    "wrong token": {"Authorization": "Bearer not-the-token"},
    "empty bearer": {"Authorization": "Bearer "},
    "basic scheme": {"Authorization": "Basic Y2VudHJhbDpzZWNyZXQ="},
    "token without scheme": {"Authorization": "central-secret-token"},
}


def test_router_is_what_design_lists():
    assert PROTECTED == sorted(
        [
            ("GET", "/metrics"),
            ("GET", "/v1/journal"),
            ("GET", "/v1/openapi.json"),
            ("GET", "/v1/status"),
            ("POST", "/v1/commands/unlock"),
            ("POST", "/v1/journal/ack"),
            ("PUT", "/v1/reservations"),
            ("PUT", "/v1/roster"),
        ]
    )


@pytest.mark.parametrize("headers", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
async def test_protected_routes_refuse_without_a_valid_token(client, target, method, path, headers):
    resp = await client.request(method, path, headers=headers, json={"up_to": 1})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="borne"')
    body = await resp.json()
    assert body["error"] == "unauthorized" and body["detail"]
    assert target.acked == 0 and target.unlock_calls == []


async def test_healthz_needs_no_token(client):
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


@pytest.mark.parametrize("token", ["central-secret-token", OTHER_TOKEN])
async def test_every_configured_token_is_accepted(client, token):
    resp = await client.get("/v1/status", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200


async def test_wrong_token_challenge_says_invalid_token(client):
    resp = await client.get("/v1/status", headers={"Authorization": "Bearer nope"})
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_no_tokens_configured_locks_the_api(target):
    from aiohttp.test_utils import TestClient, TestServer

    app = create_app(target, api_config(tokens=[]), version="0")
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as c:
        assert (await c.get("/v1/status", headers=AUTH)).status == 401
        assert (await c.get("/healthz")).status == 200


async def test_unknown_route_is_401_without_token_and_404_json_with_it(client):
    assert (await client.get("/v1/nope")).status == 401
    resp = await client.get("/v1/nope", headers=AUTH)
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"


async def test_wrong_method_is_405_json_with_allow(client):
    resp = await client.delete("/v1/roster", headers=AUTH)
    assert resp.status == 405
    assert resp.headers["Allow"] == "PUT"
    assert (await resp.json())["error"] == "method_not_allowed"
    resp = await client.post("/healthz")
    assert resp.status == 405


async def test_date_of_an_authenticated_request_is_given_to_the_clock(client, target):
    await client.get("/v1/status", headers={**AUTH, "Date": "Fri, 01 May 2026 09:00:00 GMT"})
    assert target.clock_dates == [datetime(2026, 5, 1, 9, 0, tzinfo=UTC)]


@pytest.mark.parametrize("date", ["yesterday", "Fri, 01 May 2026 09:00:00 -0000", ""])
async def test_unusable_date_is_ignored(client, target, date):
    resp = await client.get("/v1/status", headers={**AUTH, "Date": date})
    assert resp.status == 200
    assert target.clock_dates == []


async def test_date_of_an_unauthenticated_request_is_not_trusted(client, target):
    await client.get("/v1/status", headers={"Date": "Fri, 01 May 2026 09:00:00 GMT"})
    await client.get("/healthz", headers={"Date": "Fri, 01 May 2026 09:00:00 GMT"})
    assert target.clock_dates == []
