"""GET /v1/journal paging and POST /v1/journal/ack."""

from __future__ import annotations

from tests.integrations.api.conftest import AUTH


async def _page(client, **query):
    resp = await client.get("/v1/journal", params={k: str(v) for k, v in query.items()}, headers=AUTH)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_pages_through_in_seq_order(client, target):
    seen, after = [], 0
    while True:
        page = await _page(client, after=after, limit=10)
        assert page["last_seq"] == 25
        if not page["events"]:
            assert page["next_after"] == after
            break
        seen += [e["seq"] for e in page["events"]]
        after = page["next_after"]
        assert after == page["events"][-1]["seq"]
    assert seen == list(range(1, 26))


async def test_event_shape(client, target):
    target.append("trip.ended", trip_id="t1", data={"duration_s": 3600, "price_cents": 50}, odometer_km=1234)
    event = (await _page(client, after=25))["events"][0]
    assert set(event) >= {"seq", "id", "type", "at", "wall_trusted", "boot_id", "station", "bay", "vehicle",
                          "member_id", "trip_id", "reservation_id", "data"}
    assert event["type"] == "trip.ended" and event["data"]["price_cents"] == 50
    assert event["at"] == "2026-05-01T09:00:26Z"
    assert event["odometer_km"] == 1234  # extra keys from the station pass through


async def test_defaults_and_empty_journal(client, target):
    page = await _page(client)
    assert len(page["events"]) == 25 and page["next_after"] == 25
    page = await _page(client, after=1000)
    assert page == {"events": [], "next_after": 1000, "last_seq": 25}


async def test_ack_and_status(client, target):
    resp = await client.post("/v1/journal/ack", json={"up_to": 20}, headers=AUTH)
    assert (resp.status, await resp.json()) == (200, {"acknowledged": 20})
    status = await (await client.get("/v1/status", headers=AUTH)).json()
    assert status["journal"] == {"last_seq": 25, "acked_seq": 20, "backlog": 5}
    # acknowledging less again is harmless; the station keeps the highest
    resp = await client.post("/v1/journal/ack", json={"up_to": 3}, headers=AUTH)
    assert await resp.json() == {"acknowledged": 20}


async def test_ack_beyond_the_end_is_422(client, target):
    resp = await client.post("/v1/journal/ack", json={"up_to": 26}, headers=AUTH)
    assert resp.status == 422
    body = await resp.json()
    assert body["error"] == "rejected" and "26" in body["detail"]
    assert target.acked == 0
