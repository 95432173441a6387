"""Entity states as MQTT messages: what to publish for a snapshot, and a tap
journal event as a Home Assistant event."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from integrations.mqtt.discovery import OFFLINE, ONLINE, BoundEntity
from integrations.mqtt.entities import StationEntityDescription
from integrations.mqtt.topics import Topics
from station.model import Reason, StationSnapshot

log = logging.getLogger(__name__)

NONE = "None"  # Home Assistant's payload for "unknown"
_TAP_FIELDS = ("bay", "vehicle", "member_id", "trip_id", "reservation_id")  # never card refs or UIDs


class StateRenderer:
    def __init__(self, topics: Topics, station_id: str) -> None:
        self._topics = topics
        self._station_id = station_id
        self._broken: set[str] = set()  # entities whose value_fn raised (logged once)

    def render(self, entities: tuple[BoundEntity, ...], snapshot: StationSnapshot, now: datetime) -> dict[str, str]:
        """topic -> payload for every entity state and per-entity availability.

        A value of None is published as ``None`` (unknown), or, for entities
        with ``unavailable_when_none``, as ``offline`` on their availability
        topic while their state topic keeps its last value.
        """
        bays = {b.bay: b for b in snapshot.bays}
        out: dict[str, str] = {}
        for entity in entities:
            d = entity.description
            if d.value_fn is None:
                continue
            try:
                if isinstance(d, StationEntityDescription):
                    value = d.value_fn(snapshot, now)
                else:
                    bay = bays.get(entity.bay or "")
                    value = d.value_fn(bay) if bay is not None else None
            except Exception:
                uid = entity.unique_id(self._station_id)
                if uid not in self._broken:
                    self._broken.add(uid)
                    log.exception("mqtt: cannot render %s", uid)
                value = None
            if d.unavailable_when_none:
                out[self._topics.available(d.key, entity.bay)] = OFFLINE if value is None else ONLINE
                if value is not None:
                    out[self._topics.state(d.key, entity.bay)] = value
            else:
                out[self._topics.state(d.key, entity.bay)] = NONE if value is None else value
        return out


def tap_payload(event: dict[str, Any]) -> dict[str, Any]:
    """A ``card.tapped`` journal event as an HA event: an explicit allow-list
    of fields, so a card ref or UID in ``data`` can never leak."""
    data = event.get("data") or {}
    reason = str(data.get("reason") or "")
    try:
        allowed = Reason(reason).allows
    except ValueError:
        allowed = bool(data.get("allowed")) or data.get("decision") in ("allow", "allowed")
    out: dict[str, Any] = {"event_type": "allowed" if allowed else "refused", "reason": reason or None}
    for field in _TAP_FIELDS:
        if event.get(field) is not None:
            out[field] = event[field]
    if event.get("at") is not None:
        out["at"] = str(event["at"])
    return out
