"""The API in front of the real core (tests/conftest.py's rig), not the fake:
the contract between the two, end to end over a socket."""

from __future__ import annotations

import json

import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from integrations.api import create_app
from integrations.api.schemas import JournalPage, StationStatus
from station.demo import reservations_document, roster_document
from tests.integrations.api.conftest import AUTH, api_config


@pytest_asyncio.fixture
async def real(rig):
    app = create_app(rig.station, api_config(), version="0.1.0")
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as c:
        yield c


async def test_status_and_journal_of_the_real_station(real, rig):
    resp = await real.get("/v1/status", headers={**AUTH, "Date": "Mon, 01 Jun 2026 07:00:05 GMT"})
    assert resp.status == 200
    status = StationStatus.model_validate(await resp.json())
    assert status.roster is not None and status.roster.version == 1
    assert status.reservations.version == 1
    assert len(status.bays) == len(rig.config.bays)

    resp = await real.get("/v1/journal", params={"after": "0", "limit": "1"}, headers=AUTH)
    assert resp.status == 200
    page = JournalPage.model_validate(await resp.json())
    assert [e.seq for e in page.events] == [1] and page.next_after == 1 and page.last_seq >= 2
    assert {e["type"] for e in (await (await real.get("/v1/journal", headers=AUTH)).json())["events"]} >= {
        "roster.applied",
        "reservations.applied",
    }

    last = page.last_seq
    resp = await real.post("/v1/journal/ack", json={"up_to": last}, headers=AUTH)
    assert (resp.status, await resp.json()) == (200, {"acknowledged": last})
    resp = await real.post("/v1/journal/ack", json={"up_to": last + 100}, headers=AUTH)
    assert resp.status == 422


async def test_documents_through_the_real_station(real, rig):
    now = rig.clock.now()
    resp = await real.put("/v1/roster", data=roster_document(now, version=2), headers=AUTH)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["type"] == "roster" and body["version"] == 2 and body["applied"] is True

    resp = await real.put("/v1/roster", data=roster_document(now, version=1), headers=AUTH)
    assert resp.status == 422
    assert (await resp.json())["error"] == "lower_version"

    resp = await real.put("/v1/roster", data=reservations_document(now, version=5), headers=AUTH)
    assert resp.status == 422
    assert (await resp.json())["error"] == "wrong_type"

    resp = await real.put("/v1/reservations", data=reservations_document(now, version=2), headers=AUTH)
    assert resp.status == 200, await resp.text()


async def test_remote_unlock_through_the_real_station(real, rig):
    command = {"request_id": "phone-1", "member_id": "nobody", "vehicle": rig.config.bays[0].vehicle}
    first = await real.post("/v1/commands/unlock", json=command, headers=AUTH)
    again = await real.post("/v1/commands/unlock", json=command, headers=AUTH)
    assert first.status == again.status == 200
    assert await first.read() == await again.read()
    decision = json.loads(await first.read())
    assert decision["request_id"] == "phone-1" and decision["allowed"] is False and decision["reason"]


async def test_metrics_of_the_real_station(real):
    resp = await real.get("/metrics", headers=AUTH)
    assert resp.status == 200
    assert "borne_roster_version 1.0" in await resp.text()
