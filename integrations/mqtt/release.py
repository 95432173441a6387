"""Release actuator for cars whose box takes an MQTT command.

``ReleaseSection(kind="mqtt")``: publish ``payload`` on ``topic``, QoS 1,
**never retained** (a retained unlock would be replayed to the box every time
it reconnects). It shares the :class:`~integrations.mqtt.bridge.MqttBridge`
connection; while the broker is away it fails fast with a
``TransientIntegrationError`` instead of queueing an unlock for later.
"""

from __future__ import annotations

import logging
from typing import Protocol

from station.errors import ConfigError

log = logging.getLogger(__name__)


class CommandPublisher(Protocol):
    async def publish_command(self, topic: str, payload: str, *, qos: int = 1) -> None: ...


class MqttReleaseActuator:
    def __init__(self, publisher: CommandPublisher, *, topic: str, payload: str = "UNLOCK") -> None:
        if not topic or any(c in topic for c in "+#"):
            raise ConfigError(f"release.topic: a plain MQTT topic is needed, got {topic!r}")
        self._publisher = publisher
        self._topic = topic
        self._payload = payload

    async def release(self) -> None:
        await self._publisher.publish_command(self._topic, self._payload, qos=1)
        log.info("release command published on %s", self._topic)
