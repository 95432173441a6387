"""Release actuator for cars unlocked through a Home Assistant entity.

``ReleaseSection(kind="homeassistant", entity_id=...)``: ``lock.unlock`` for a
``lock.*`` entity, ``switch.turn_on`` for a ``switch.*`` one, ``button.press``
for a ``button.*`` one.
"""

from __future__ import annotations

import logging

from integrations.homeassistant.client import HomeAssistantClient
from station.config import ReleaseSection
from station.errors import ConfigError

log = logging.getLogger(__name__)

_SERVICES = {"lock": "unlock", "switch": "turn_on", "button": "press"}


class HomeAssistantReleaseActuator:
    def __init__(self, client: HomeAssistantClient, entity_id: str) -> None:
        domain = entity_id.partition(".")[0]
        if domain not in _SERVICES or "." not in entity_id:
            raise ConfigError(
                f"release.entity_id: expected a lock.*, switch.* or button.* entity, got {entity_id!r}"
            )
        self._client = client
        self._entity_id = entity_id
        self._domain = domain
        self._service = _SERVICES[domain]

    @classmethod
    def from_config(cls, client: HomeAssistantClient, release: ReleaseSection) -> HomeAssistantReleaseActuator:
        if release.kind != "homeassistant" or not release.entity_id:
            raise ConfigError("bays[].release: kind homeassistant needs 'entity_id'")
        return cls(client, release.entity_id)

    async def release(self) -> None:
        await self._client.call_service(self._domain, self._service, entity_id=self._entity_id)
        log.info("release: %s.%s %s", self._domain, self._service, self._entity_id)
