"""The sync API as an aiohttp application (DESIGN §5).

One route table (:data:`OPERATIONS` paired with handlers) feeds both the router
and the OpenAPI document. One middleware authenticates, feeds the ``Date`` of
authenticated requests to the station's clock, enforces the body limit, turns
every failure into ``{"error", "detail"}`` and counts requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from integrations.api.auth import TokenCheck, parse_http_date
from integrations.api.errors import ApiError, error_for, invalid
from integrations.api.idempotency import IdempotencyMemo
from integrations.api.metrics import ApiMetrics, MetricsFn
from integrations.api.openapi import Operation, build_openapi
from integrations.api.schemas import (
    AlertStatus,
    BayStatus,
    DocumentApplied,
    Health,
    JournalAck,
    JournalAcked,
    JournalPage,
    JournalQuery,
    JournalStatus,
    ReservationsStatus,
    RosterStatus,
    SignedDocument,
    StationStatus,
    UnlockCommand,
    UnlockDecision,
)
from station.config import ApiSection
from station.model import StationSnapshot
from station.ports import SyncTarget

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_OFFLOAD_BYTES = 1024 * 1024  # validate envelopes larger than this off the event loop

OPERATIONS: tuple[Operation, ...] = (
    Operation(method="GET", path="/healthz", operation_id="healthz", summary="Liveness; no authentication", response=Health, auth=False),
    Operation(
        method="GET",
        path="/v1/openapi.json",
        operation_id="openapi",
        summary="This document",
        response_schema={"type": "object"},
    ),
    Operation(
        method="GET",
        path="/metrics",
        operation_id="metrics",
        summary="Prometheus metrics (text exposition format)",
        response_media="text/plain",
        response_schema={"type": "string"},
    ),
    Operation(method="GET", path="/v1/status", operation_id="status", summary="The station at a glance", response=StationStatus, errors=(503,)),
    Operation(
        method="PUT",
        path="/v1/roster",
        operation_id="put_roster",
        summary="Apply a signed roster document (or one part of one)",
        description="A delta on another base answers 409; any other refusal 422 with the reason as `error`. The roster in force is kept on any refusal.",
        body=SignedDocument,
        response=DocumentApplied,
        errors=(409, 503),
    ),
    Operation(
        method="PUT",
        path="/v1/reservations",
        operation_id="put_reservations",
        summary="Apply a signed reservations document (or one part of one)",
        description="Same rules as the roster.",
        body=SignedDocument,
        response=DocumentApplied,
        errors=(409, 503),
    ),
    Operation(
        method="GET",
        path="/v1/journal",
        operation_id="journal",
        summary="Journal events after a cursor, in seq order",
        query=JournalQuery,
        response=JournalPage,
        errors=(503,),
    ),
    Operation(
        method="POST",
        path="/v1/journal/ack",
        operation_id="journal_ack",
        summary="Acknowledge events up to a seq",
        body=JournalAck,
        response=JournalAcked,
        errors=(503,),
    ),
    Operation(
        method="POST",
        path="/v1/commands/unlock",
        operation_id="unlock",
        summary="Remote unlock; idempotent per request_id",
        description="Answers the decision and its reason (a refusal is a 200 with allowed=false). A request_id reused with another body answers 422 request_id_reused.",
        body=UnlockCommand,
        response=UnlockDecision,
        errors=(503,),
    ),
)

_PUBLIC_PATHS = frozenset(op.path for op in OPERATIONS if not op.auth)
_METHOD_LABELS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


class _State:
    def __init__(self, target: SyncTarget, config: ApiSection, metrics: ApiMetrics, spec: bytes) -> None:
        self.target = target
        self.config = config
        self.tokens = TokenCheck(config.tokens)
        self.metrics = metrics
        self.spec = spec
        self.unlocks: IdempotencyMemo[UnlockDecision] = IdempotencyMemo()


STATE = web.AppKey("borne_api_state", _State)
TOKEN_NAME = web.RequestKey("borne_token_name", str)


# -- helpers ------------------------------------------------------------------


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(body=model.model_dump_json().encode(), status=status, content_type="application/json")


def _error_response(err: ApiError) -> web.Response:
    body = json.dumps({"error": err.code, "detail": err.detail}).encode()
    return web.Response(body=body, status=err.status, content_type="application/json", headers=err.headers)


async def _body(request: web.Request, model: type[M], *, code: str = "invalid_request") -> M:
    raw = await request.read()  # raises HTTPRequestEntityTooLarge past client_max_size
    try:
        if len(raw) > _OFFLOAD_BYTES:
            return await asyncio.to_thread(model.model_validate_json, raw)
        return model.model_validate_json(raw)
    except ValidationError as err:
        raise invalid(err, "body", code=code) from None


def _query(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as err:
        raise invalid(err, "query") from None


def _status(snap: StationSnapshot) -> StationStatus:
    roster = snap.roster
    return StationStatus(
        station=snap.station,
        name=snap.name,
        software_version=snap.version,
        mode=str(snap.mode),
        state=snap.state,
        clock_trusted=snap.clock_trusted,
        last_sync=snap.last_sync,
        unknown_card_rate=snap.unknown_card_rate,
        roster=None
        if roster is None
        else RosterStatus(version=roster.version, size=roster.size, expires_at=roster.expires_at, applied_at=roster.applied_at),
        reservations=ReservationsStatus(version=snap.reservations_version),
        journal=JournalStatus(
            last_seq=snap.journal_last_seq,
            acked_seq=snap.journal_acked_seq,
            backlog=max(0, snap.journal_last_seq - snap.journal_acked_seq),
        ),
        bays=[
            BayStatus(
                bay=b.bay,
                home_vehicle=b.home_vehicle,
                vehicle=b.vehicle,
                state=b.state,
                relay_on=b.relay_on,
                power_w=b.power_w,
                energy_kwh=b.energy_kwh,
                plug_reachable=b.plug_reachable,
                open_trip_id=b.open_trip_id,
            )
            for b in snap.bays
        ],
        alerts=[AlertStatus(key=a.key, title=a.title, message=a.message, severity=a.severity) for a in snap.alerts],
    )


# -- handlers -------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return _json(Health())


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[STATE].spec, content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.Response(body=state.metrics.render(), headers={"Content-Type": state.metrics.content_type})


async def status(request: web.Request) -> web.Response:
    return _json(_status(request.app[STATE].target.snapshot()))


async def _apply(request: web.Request, expected: Literal["roster", "reservations"]) -> web.Response:
    raw = await request.read()
    if len(raw) <= _OFFLOAD_BYTES:
        await _body(request, SignedDocument, code="invalid_envelope")
    # A large part goes to the station as it is: it checks the same envelope in its
    # worker process, while validating 8 MB of base64 here would hold the event loop
    # (and so the taps) for tens of milliseconds.
    summary = await request.app[STATE].target.apply_document(raw, expected_type=expected)
    return _json(DocumentApplied.model_validate(summary))


async def put_roster(request: web.Request) -> web.Response:
    return await _apply(request, "roster")


async def put_reservations(request: web.Request) -> web.Response:
    return await _apply(request, "reservations")


async def journal(request: web.Request) -> web.Response:
    query = _query(request, JournalQuery)
    events, last_seq = await request.app[STATE].target.journal_page(query.after, query.limit)
    page = {"events": events, "next_after": events[-1]["seq"] if events else query.after, "last_seq": last_seq}
    # The events come from the journal as the spec says (schemathesis checks it);
    # a page of 1000 is serialized in a thread rather than re-validated on the loop.
    body = await asyncio.to_thread(lambda: json.dumps(page, separators=(",", ":")).encode())
    return web.Response(body=body, content_type="application/json")


async def journal_ack(request: web.Request) -> web.Response:
    ack = await _body(request, JournalAck)
    acknowledged = await request.app[STATE].target.acknowledge(ack.up_to)
    return _json(JournalAcked(acknowledged=acknowledged))


async def unlock(request: web.Request) -> web.Response:
    command = await _body(request, UnlockCommand)
    state = request.app[STATE]

    async def decide() -> UnlockDecision:
        decision = await state.target.remote_unlock(
            request_id=command.request_id,
            vehicle=command.vehicle,
            reservation_id=command.reservation_id,
            member_id=command.member_id,
        )
        return UnlockDecision(
            request_id=command.request_id,
            allowed=decision.allowed,
            releases=decision.releases,
            reason=decision.reason,
            member_id=decision.member_id,
            reservation_id=decision.reservation_id,
            bay=decision.bay,
            vehicle=decision.vehicle,
            trip_id=decision.trip_id,
            detail=decision.detail,
        )

    return _json(await state.unlocks.answer(command.request_id, command, decide))


_HANDLERS: dict[str, Handler] = {
    "healthz": healthz,
    "openapi": openapi,
    "metrics": metrics,
    "status": status,
    "put_roster": put_roster,
    "put_reservations": put_reservations,
    "journal": journal,
    "journal_ack": journal_ack,
    "unlock": unlock,
}


# -- middleware -------------------------------------------------------------------


def _authenticate(request: web.Request, state: _State) -> None:
    name = state.tokens.identify(request.headers.get("Authorization"))
    if name is None:
        challenge = 'Bearer realm="borne"'
        if "Authorization" in request.headers:
            challenge += ', error="invalid_token"'
        raise ApiError(401, "unauthorized", "a valid bearer token is required", headers={"WWW-Authenticate": challenge})
    request[TOKEN_NAME] = name
    central_date = parse_http_date(request.headers.get("Date")) if state.tokens.trusts_date(name) else None
    if central_date is not None:
        try:
            state.target.trust_clock(central_date)
        except Exception:  # a clock the station refuses must not fail the request
            log.warning("Date %r from token %s was not taken", request.headers.get("Date"), name, exc_info=True)


@web.middleware
async def _gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    started = time.perf_counter()
    route = request.match_info.route.name or "unmatched"
    try:
        if request.path not in _PUBLIC_PATHS:
            _authenticate(request, state)
        length = request.content_length
        if length is not None and length > state.config.max_body_bytes:
            raise ApiError(413, "body_too_large", f"the body is {length} bytes; the limit is {state.config.max_body_bytes}")
        response = await handler(request)
    except Exception as err:  # noqa: BLE001 - every failure becomes a JSON answer
        known = error_for(err)
        if known is None:
            log.exception("%s %s failed", request.method, request.path)
            known = ApiError(500, "internal", "the station failed to answer; see its log")
        elif known.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, known)
        else:
            log.debug("%s %s: %s", request.method, request.path, known)
        response = _error_response(known)
    method = request.method if request.method in _METHOD_LABELS else "other"  # labels stay bounded
    state.metrics.observe(route, method, response.status, time.perf_counter() - started)
    return response


# -- assembly ------------------------------------------------------------------------


def create_app(target: SyncTarget, config: ApiSection, *, metrics_fn: MetricsFn | None = None, version: str) -> web.Application:
    """The sync API for ``target``.

    ``metrics_fn``, if given, returns extra Prometheus metric families
    (``prometheus_client.Metric``) appended to ``GET /metrics`` at each scrape.
    """
    app = web.Application(middlewares=[_gate], client_max_size=config.max_body_bytes)
    spec = json.dumps(build_openapi(OPERATIONS, version=version), separators=(",", ":")).encode()
    app[STATE] = _State(target, config, ApiMetrics(target.snapshot, metrics_fn), spec)
    for op in OPERATIONS:
        handler = _HANDLERS[op.operation_id]
        if op.method == "GET":
            app.router.add_get(op.path, handler, name=op.operation_id, allow_head=False)
        else:
            app.router.add_route(op.method, op.path, handler, name=op.operation_id)
    return app


def openapi_document(*, version: str) -> dict[str, Any]:
    """The spec without an app (for docs and the central server's build)."""
    return build_openapi(OPERATIONS, version=version)
