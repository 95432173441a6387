"""schemathesis against the spec the station serves, over a real socket.

The server runs in a thread with its own event loop (schemathesis' calls are
synchronous), through ApiServer.run as in production, on a free port; the
schema is loaded from its GET /v1/openapi.json.

Two workarounds for schemathesis 4.32.5:
- its lazy ``schemathesis.pytest.from_fixture`` fails on pytest 9 (it sets
  ``request.node._nodeid``), so each operation gets a plain hypothesis test
  driven by ``APIOperation.as_strategy``;
- ``case.call`` counts pooled connections with ``pools.keys()``, which fails
  when urllib3-future (pulled in by niquests) has replaced urllib3, so the
  request is sent with a plain requests session and checked with
  ``case.validate_response``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from integrations.api import ApiServer
from integrations.api.app import OPERATIONS
from tests.integrations.api.conftest import AUTH, api_config
from tests.integrations.api.fake import FakeSyncTarget, new_key

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    server = ApiServer(FakeSyncTarget(new_key()[1], events=40), api_config(), version="0.1.0", shutdown_timeout=1)

    async def serve() -> None:
        try:
            await server.run()
        except asyncio.CancelledError:
            pass

    task = loop.create_task(serve())
    thread = threading.Thread(target=loop.run_until_complete, args=(task,), name="api-under-test", daemon=True)
    thread.start()
    try:
        port = asyncio.run_coroutine_threadsafe(server.wait_ready(), loop).result(timeout=10)
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.fixture(scope="module")
def api_schema(base_url):
    return schemathesis.openapi.from_url(f"{base_url}/v1/openapi.json", headers=AUTH)


def _cases() -> list:
    cases = []
    for op in OPERATIONS:
        name = f"{op.method} {op.path}"
        cases.append(pytest.param(op, GenerationMode.POSITIVE, id=f"{name} positive"))
        if op.auth or op.body or op.query:  # else nothing can be made invalid
            cases.append(pytest.param(op, GenerationMode.NEGATIVE, id=f"{name} negative"))
    return cases


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("op", "mode"), _cases())
def test_operation_conforms_to_the_served_spec(api_schema, base_url, session, op, mode):
    operation = api_schema[op.path][op.method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case):
        kwargs = case.as_transport_kwargs(base_url=base_url, headers=AUTH)
        response = session.request(**kwargs, timeout=10, allow_redirects=False)
        case.validate_response(response, checks=CHECKS, headers=kwargs.get("headers"))

    run()
