"""The spec is generated from the same table as the router, and served as such."""

from __future__ import annotations

from integrations.api import create_app, openapi_document
from tests.integrations.api.conftest import AUTH, api_config
from tests.integrations.api.fake import FakeSyncTarget


def _router_operations() -> set[tuple[str, str]]:
    app = create_app(FakeSyncTarget({}), api_config(), version="0")
    return {(r.method.lower(), r.resource.canonical) for r in app.router.routes()}


def _spec_operations(spec: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, item in spec["paths"].items() for method in item}


async def test_served_spec_is_the_generated_one(client):
    resp = await client.get("/v1/openapi.json", headers=AUTH)
    assert resp.status == 200
    spec = await resp.json()
    assert spec == openapi_document(version="0.1.0")
    assert spec["openapi"].startswith("3.1")
    assert _spec_operations(spec) == _router_operations()


def test_every_route_is_in_the_spec_and_vice_versa():
    assert _spec_operations(openapi_document(version="0")) == _router_operations()


def test_security_and_error_responses():
    spec = openapi_document(version="0")
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A token whose SHA-256 is listed in the station's api.tokens",
    }
    assert spec["security"] == [{"bearer": []}]
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if path == "/healthz":
                assert op["security"] == [] and "401" not in op["responses"]
                continue
            assert "401" in op["responses"], (method, path)
            if "requestBody" in op:
                assert {"400", "413", "422"} <= set(op["responses"]), (method, path)
            for code, response in op["responses"].items():
                if code != "200":
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}


def test_signed_document_envelope_is_published():
    spec = openapi_document(version="0")
    envelope = spec["components"]["schemas"]["SignedDocument"]
    assert set(envelope["required"]) == {"key_id", "payload", "signature"}
    assert envelope["additionalProperties"] is False
    for path in ("/v1/roster", "/v1/reservations"):
        body = spec["paths"][path]["put"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/SignedDocument"}
        assert "409" in spec["paths"][path]["put"]["responses"]
    params = {p["name"]: p for p in spec["paths"]["/v1/journal"]["get"]["parameters"]}
    assert params["limit"]["schema"]["maximum"] == 1000 and params["after"]["schema"]["minimum"] == 0
