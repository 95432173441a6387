"""The OpenAPI document, generated from the route table and the pydantic models.

Nothing here is written by hand per route: each :class:`Operation` names its
body, query and response models, and the document is built from their JSON
schemas (OpenAPI 3.1 uses JSON Schema 2020-12, which is what pydantic emits).
The app registers exactly the same operations, so the spec cannot drift.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from integrations.api.schemas import ErrorBody

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/{model}"

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request: the body is not JSON, or a parameter has the wrong type",
    401: "Missing or wrong bearer token",
    409: "A delta document on another base version: send a full document",
    413: "Request body larger than the station's limit",
    422: "Well-formed but refused: schema error (names the field) or a rule of the station",
    503: "The station cannot serve this right now (storage or device failure)",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """One route of the API, described once for the router and for the spec."""

    method: Literal["GET", "PUT", "POST"]
    path: str
    operation_id: str
    summary: str
    response: type[BaseModel] | None = None  # None: see response_media / response_schema
    response_media: str = "application/json"
    response_schema: dict[str, Any] | None = None  # for non-model answers
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    auth: bool = True
    description: str = ""

    def error_codes(self) -> tuple[int, ...]:
        codes = set(self.errors)
        if self.auth:
            codes.add(401)
        if self.body is not None:
            codes.update((400, 413, 422))
        if self.query is not None:
            codes.update((400, 422))
        return tuple(sorted(codes))


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF)
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", "")
        prop.pop("title", None)
        params.append(
            {"name": name, "in": "query", "required": name in required, "description": description, "schema": prop}
        )
    return params


def build_openapi(operations: Iterable[Operation], *, version: str, title: str = "borne station sync API") -> dict[str, Any]:
    operations = tuple(operations)
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [(ErrorBody, "serialization")]
    for op in operations:
        if op.body is not None:
            models.append((op.body, "validation"))
        if op.response is not None:
            models.append((op.response, "serialization"))
    keys, top = models_json_schema(models, ref_template=_REF)
    components: dict[str, Any] = dict(top.get("$defs", {}))
    error_ref = keys[(ErrorBody, "serialization")]

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        if op.response is not None:
            ok_schema = keys[(op.response, "serialization")]
        else:
            ok_schema = op.response_schema or {}
        responses: dict[str, Any] = {
            "200": {"description": "OK", "content": {op.response_media: {"schema": ok_schema}}},
        }
        for code in op.error_codes():
            responses[str(code)] = {
                "description": ERROR_DESCRIPTIONS[code],
                "content": {"application/json": {"schema": error_ref}},
            }
        if op.auth:
            responses["401"]["headers"] = {
                "WWW-Authenticate": {"description": "Bearer challenge", "schema": {"type": "string"}}
            }
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "responses": responses,
        }
        if op.description:
            entry["description"] = op.description
        if not op.auth:
            entry["security"] = []
        if op.query is not None:
            entry["parameters"] = _query_parameters(op.query)
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": keys[(op.body, "validation")]}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = entry

    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": (
                "Served by each borne station. The central server pushes signed roster and "
                "reservations documents, pulls the journal after a cursor and acknowledges it, "
                "and sends remote unlocks. Errors are always {error, detail}."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token whose SHA-256 is listed in the station's api.tokens",
                }
            },
        },
        "security": [{"bearer": []}],
    }
