"""Home Assistant MQTT discovery payloads, built from the entity descriptions.

Classic per-entity discovery (``<prefix>/<component>/<node_id>/<object_id>/
config``, retained), which every Home Assistant version with MQTT discovery
understands. Full key names are used rather than abbreviations: the payloads
are small and stay readable in ``mosquitto_sub``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integrations.mqtt.entities import (
    BAY_ENTITIES,
    OFF,
    ON,
    PRESS,
    STATION_ENTITIES,
    BayEntityDescription,
    EntityDescription,
    StationEntityDescription,
)
from integrations.mqtt.topics import Topics

ONLINE, OFFLINE = "online", "offline"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceInfo:
    station_id: str
    name: str
    sw_version: str
    model: str = "borne car-sharing station"
    manufacturer: str = "borne"
    suggested_area: str | None = None

    def as_payload(self) -> dict[str, Any]:
        device: dict[str, Any] = {
            "identifiers": [f"borne_{self.station_id}"],
            "name": self.name,
            "model": self.model,
            "manufacturer": self.manufacturer,
            "sw_version": self.sw_version,
        }
        if self.suggested_area:
            device["suggested_area"] = self.suggested_area
        return device


@dataclass(frozen=True, slots=True)
class BoundEntity:
    """One entity description bound to its place: the station, or one bay."""

    description: StationEntityDescription | BayEntityDescription
    bay: str | None

    @property
    def key(self) -> str:
        return self.description.key

    def unique_id(self, station_id: str) -> str:
        if self.bay is None:
            return f"borne_{station_id}_{self.key}"
        return f"borne_{station_id}_{self.bay}_{self.key}"

    @property
    def name(self) -> str:
        return self.description.name if self.bay is None else f"Bay {self.bay} {self.description.name}"


def bind_entities(bays: list[str] | tuple[str, ...]) -> tuple[BoundEntity, ...]:
    station = tuple(BoundEntity(d, None) for d in STATION_ENTITIES)
    per_bay = tuple(BoundEntity(d, bay) for bay in bays for d in BAY_ENTITIES)
    return station + per_bay


def discovery_message(entity: BoundEntity, topics: Topics, device: DeviceInfo, origin_version: str) -> tuple[str, dict[str, Any]]:
    """The retained discovery topic and its JSON payload for one entity."""
    d: EntityDescription = entity.description
    bay = entity.bay
    payload: dict[str, Any] = {
        "name": entity.name,
        "unique_id": entity.unique_id(device.station_id),
        "device": device.as_payload(),
        "origin": {"name": "borne", "sw_version": origin_version},
        "qos": 1,
    }
    if d.unavailable_when_none:
        payload["availability"] = [
            {"topic": topics.status, "payload_available": ONLINE, "payload_not_available": OFFLINE},
            {"topic": topics.available(d.key, bay), "payload_available": ONLINE, "payload_not_available": OFFLINE},
        ]
        payload["availability_mode"] = "all"
    else:
        payload["availability_topic"] = topics.status
        payload["payload_available"] = ONLINE
        payload["payload_not_available"] = OFFLINE
    if d.component != "button":
        payload["state_topic"] = topics.state(d.key, bay)
    if d.command is not None:
        payload["command_topic"] = topics.command(d.key, bay)
        payload["retain"] = False  # a command must never be replayed by the broker
    for key, value in (
        ("device_class", d.device_class),
        ("state_class", d.state_class),
        ("unit_of_measurement", d.unit),
        ("entity_category", d.entity_category),
        ("icon", d.icon),
        ("suggested_display_precision", d.precision),
    ):
        if value is not None:
            payload[key] = value
    if d.options:
        payload["options"] = list(d.options)
    if d.component in ("binary_sensor", "switch"):
        payload["payload_on"] = ON
        payload["payload_off"] = OFF
    if d.component == "switch":
        payload["state_on"] = ON
        payload["state_off"] = OFF
    if d.component == "button":
        payload["payload_press"] = PRESS
    if d.component == "event":
        payload["event_types"] = list(d.event_types)
    return topics.discovery(d.component, d.key, bay), payload
