"""A small aiohttp server speaking Home Assistant's REST API: bearer auth,
``GET /api/``, ``GET /api/states/{entity_id}``, ``POST /api/services/{d}/{s}``.

Services touch the fake's states the way Home Assistant would
(``lock.unlock`` -> ``unlocked``, ``persistent_notification.create`` stores a
notification...), and every call is recorded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

TOKEN = "test-long-lived-token"


def _state(entity_id: str, state: str, attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "entity_id": entity_id,
        "state": state,
        "attributes": attributes or {},
        "last_changed": now,
        "last_updated": now,
        "last_reported": now,
        "context": {"id": "01HTEST", "parent_id": None, "user_id": None},
    }


class FakeHomeAssistant:
    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.notifications: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.fail_status: int | None = None  # answer every /api request with this status
        self.app = web.Application(middlewares=[self._auth, self._faults])
        self.app.router.add_get("/api/", self._api)
        self.app.router.add_get("/api/states/{entity_id}", self._get_state)
        self.app.router.add_post("/api/services/{domain}/{service}", self._service)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.Response(status=401, text="401: Unauthorized")
        return await handler(request)

    @web.middleware
    async def _faults(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.fail_status is not None:
            return web.Response(status=self.fail_status, text="500 Internal Server Error")
        return await handler(request)

    async def _api(self, request: web.Request) -> web.Response:
        return web.json_response({"message": "API running."})

    async def _get_state(self, request: web.Request) -> web.Response:
        entity_id = request.match_info["entity_id"]
        if entity_id not in self.states:
            return web.json_response({"message": "Entity not found."}, status=404)
        return web.json_response(_state(entity_id, self.states[entity_id]))

    async def _service(self, request: web.Request) -> web.Response:
        domain, service = request.match_info["domain"], request.match_info["service"]
        data = await request.json() if request.can_read_body else {}
        self.calls.append((domain, service, data))
        changed: list[dict[str, Any]] = []
        entity_id = data.get("entity_id")
        effects = {("lock", "unlock"): "unlocked", ("lock", "lock"): "locked", ("switch", "turn_on"): "on"}
        if (domain, service) in effects and entity_id:
            if entity_id not in self.states:
                return web.json_response({"message": f"Referenced entities {entity_id} are missing"}, status=400)
            self.states[entity_id] = effects[(domain, service)]
            changed.append(_state(entity_id, self.states[entity_id]))
        elif (domain, service) == ("persistent_notification", "create"):
            self.notifications[data["notification_id"]] = data
        elif (domain, service) == ("persistent_notification", "dismiss"):
            self.notifications.pop(data["notification_id"], None)
        elif domain not in ("persistent_notification", "button"):
            return web.json_response({"message": "Service not found."}, status=400)
        return web.json_response(changed)
