from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from integrations.api import create_app
from integrations.api.auth import hash_token
from station.config import ApiSection, TokenEntry
from tests.integrations.api.fake import FakeSyncTarget, new_key

TOKEN = "central-secret-token"
OTHER_TOKEN = "operator-laptop-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 1024 * 1024


def api_config(**overrides: object) -> ApiSection:
    values: dict[str, object] = {
        "listen": "127.0.0.1",
        "port": 0,
        "tokens": [
            TokenEntry(name="central", sha256=hash_token(TOKEN)),
            TokenEntry(name="operator", sha256=hash_token(OTHER_TOKEN)),
        ],
        "max_body_bytes": MAX_BODY,
    }
    values.update(overrides)
    return ApiSection(**values)


@pytest.fixture
def signing() -> tuple[Ed25519PrivateKey, dict]:
    return new_key()


@pytest.fixture
def key(signing) -> Ed25519PrivateKey:
    return signing[0]


@pytest.fixture
def target(signing) -> FakeSyncTarget:
    return FakeSyncTarget(signing[1], events=25)


@pytest_asyncio.fixture
async def client(target: FakeSyncTarget) -> AsyncIterator[TestClient]:
    app = create_app(target, api_config(), version="0.1.0")
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as c:
        yield c
