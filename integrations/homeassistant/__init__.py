"""Home Assistant over its REST API (homeassistant-api, imported lazily):
persistent notifications for alerts, a release actuator on a lock/switch
entity, and a watcher of the car's lock entity."""

from integrations.homeassistant.client import HomeAssistantClient
from integrations.homeassistant.lock_watcher import HomeAssistantLockWatcher
from integrations.homeassistant.notifier import HomeAssistantNotifier
from integrations.homeassistant.release import HomeAssistantReleaseActuator

__all__ = [
    "HomeAssistantClient",
    "HomeAssistantLockWatcher",
    "HomeAssistantNotifier",
    "HomeAssistantReleaseActuator",
]
