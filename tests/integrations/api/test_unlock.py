"""POST /v1/commands/unlock: the decision, the same answer for a retry."""

from __future__ import annotations

import asyncio

from tests.integrations.api.conftest import AUTH

UNLOCK = {"request_id": "req-1", "reservation_id": "r1", "vehicle": "ami-1"}


async def _unlock(client, body):
    resp = await client.post("/v1/commands/unlock", json=body, headers=AUTH)
    return resp.status, await resp.read()


async def test_allowed_unlock_answers_decision_and_reason(client, target):
    status, raw = await _unlock(client, UNLOCK)
    assert status == 200
    import json

    assert json.loads(raw) == {
        "request_id": "req-1",
        "allowed": True,
        "releases": True,
        "reason": "reservation",
        "member_id": "m1",
        "reservation_id": "r1",
        "bay": "1",
        "vehicle": "ami-1",
        "trip_id": "t-1",
        "detail": "",
    }


async def test_refusal_is_a_200_with_the_reason(client):
    status, raw = await _unlock(client, {"request_id": "req-2", "member_id": "m9", "vehicle": "ami-1"})
    import json

    body = json.loads(raw)
    assert status == 200 and body["allowed"] is False and body["reason"] == "no_reservation"


async def test_retry_gets_the_identical_answer_and_reaches_the_station_once(client, target):
    first = await _unlock(client, UNLOCK)
    again = await _unlock(client, UNLOCK)
    assert first == again
    assert len(target.unlock_calls) == 1
    assert [e["type"] for e in target.events].count("trip.started") == 1


async def test_concurrent_retries_share_one_attempt(client, target):
    gate = asyncio.Event()
    real = target.remote_unlock

    async def slow(**kwargs):
        await gate.wait()
        return await real(**kwargs)

    target.remote_unlock = slow
    pending = [asyncio.ensure_future(_unlock(client, UNLOCK)) for _ in range(5)]
    await asyncio.sleep(0.05)
    gate.set()
    answers = await asyncio.gather(*pending)
    assert len(set(answers)) == 1 and answers[0][0] == 200
    assert len(target.unlock_calls) == 1


async def test_request_id_reused_for_another_request_is_422(client, target):
    await _unlock(client, UNLOCK)
    status, raw = await _unlock(client, {**UNLOCK, "vehicle": "ami-2"})
    assert status == 422
    assert b"request_id_reused" in raw
    assert len(target.unlock_calls) == 1


async def test_a_failed_attempt_is_not_remembered(client, target):
    from station.errors import TransientIntegrationError

    real = target.remote_unlock
    calls = 0

    async def flaky(**kwargs):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TransientIntegrationError("release actuator timed out")
        return await real(**kwargs)

    target.remote_unlock = flaky
    assert (await _unlock(client, UNLOCK))[0] == 503
    assert (await _unlock(client, UNLOCK))[0] == 200
