"""The station's Home Assistant entities, as data.

Each entity is a frozen description (in the manner of Home Assistant's
``wled/sensor.py``): what it is for Home Assistant (component, device and
state class, unit), how its state is read from a snapshot (``value_fn``) and,
for controls, which station command a payload maps to (``command``).
Discovery payloads, state topics and command routing are all built from the
two tuples below; nothing is written entity by entity elsewhere.

A ``value_fn`` returns the exact MQTT payload, or None when the value is not
known: the entity then shows ``unknown`` in Home Assistant (payload ``None``),
or, with ``unavailable_when_none``, goes ``unavailable`` through its own
availability topic and keeps its last state. The lifetime energy counter uses
the latter so the Energy dashboard never sees a drop to 0.

Nothing here may publish personal data: members are not entities, and card
refs or UIDs are never part of a snapshot value.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from station.model import BaySnapshot, Mode, StationSnapshot
from station.ports import StationControl

BY = "homeassistant"  # the ``by`` of every command that comes from Home Assistant

Command = Callable[[StationControl, "str | None", str], Awaitable[object]]

ON, OFF = "ON", "OFF"
PRESS = "PRESS"

STATION_STATES = ("ok", "degraded", "maintenance", "out_of_service")
BAY_STATES = ("idle", "waiting_plug", "charging", "complete", "fault", "released")
TAP_EVENT_TYPES = ("allowed", "refused")


@dataclass(frozen=True, slots=True, kw_only=True)
class EntityDescription:
    key: str  # stable: part of unique_id and topics, never renamed
    component: str  # sensor | binary_sensor | switch | button | select | event
    name: str
    device_class: str | None = None
    state_class: str | None = None
    unit: str | None = None
    entity_category: str | None = None  # "diagnostic" or None
    icon: str | None = None
    precision: int | None = None  # suggested_display_precision (sensors)
    options: tuple[str, ...] = ()  # select, and sensors of device_class enum
    event_types: tuple[str, ...] = ()  # event
    unavailable_when_none: bool = False
    command: Command | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StationEntityDescription(EntityDescription):
    value_fn: Callable[[StationSnapshot, datetime], str | None] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BayEntityDescription(EntityDescription):
    value_fn: Callable[[BaySnapshot], str | None] | None = None


# -- value helpers ---------------------------------------------------------


def _on_off(value: bool | None) -> str | None:
    return None if value is None else (ON if value else OFF)


def _number(value: float | int | None, digits: int = 3) -> str | None:
    if value is None:
        return None
    return str(round(float(value), digits)) if isinstance(value, float) else str(value)


def _timestamp(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _one_of(value: str, options: tuple[str, ...]) -> str | None:
    return value if value in options else None


def _roster_age_h(snapshot: StationSnapshot, now: datetime) -> str | None:
    applied = snapshot.roster.applied_at if snapshot.roster else None
    if applied is None:
        return None
    return _number(max(0.0, (now - applied).total_seconds() / 3600), 2)


# -- command helpers: a bad payload raises ValueError, which the bridge logs --


def _parse_on_off(payload: str) -> bool:
    if payload not in (ON, OFF):
        raise ValueError(f"expected {ON} or {OFF}, got {payload!r}")
    return payload == ON


def _parse_press(payload: str) -> None:
    if payload != PRESS:
        raise ValueError(f"expected {PRESS}, got {payload!r}")


def _bay(bay: str | None) -> str:
    if bay is None:
        raise ValueError("a bay command needs a bay")
    return bay


async def _set_charger(station: StationControl, bay: str | None, payload: str) -> None:
    await station.set_charger(_bay(bay), _parse_on_off(payload), by=BY)


async def _maintenance_release(station: StationControl, bay: str | None, payload: str) -> object:
    _parse_press(payload)
    return await station.maintenance_release(_bay(bay), by=BY)


async def _set_mode(station: StationControl, bay: str | None, payload: str) -> None:
    await station.set_mode(Mode(payload), by=BY)  # ValueError on an unknown mode


async def _sync_now(station: StationControl, bay: str | None, payload: str) -> None:
    _parse_press(payload)
    await station.sync_now()


# -- the entities ------------------------------------------------------------

STATION_ENTITIES: tuple[StationEntityDescription, ...] = (
    StationEntityDescription(
        key="state",
        component="sensor",
        name="State",
        device_class="enum",
        options=STATION_STATES,
        icon="mdi:ev-station",
        value_fn=lambda s, now: _one_of(s.state, STATION_STATES),
    ),
    StationEntityDescription(
        key="mode",
        component="select",
        name="Mode",
        options=tuple(m.value for m in Mode),
        icon="mdi:wrench",
        value_fn=lambda s, now: s.mode.value,
        command=_set_mode,
    ),
    StationEntityDescription(
        key="sync_now",
        component="button",
        name="Sync now",
        icon="mdi:cloud-sync",
        command=_sync_now,
    ),
    StationEntityDescription(
        key="taps",
        component="event",
        name="Taps",
        event_types=TAP_EVENT_TYPES,
        icon="mdi:nfc",
    ),
    StationEntityDescription(
        key="unknown_card_rate",
        component="sensor",
        name="Unknown card rate",
        state_class="measurement",
        unit="taps/min",
        precision=1,
        icon="mdi:card-remove-outline",
        value_fn=lambda s, now: _number(s.unknown_card_rate, 2),
    ),
    StationEntityDescription(
        key="problem",
        component="binary_sensor",
        name="Needs attention",
        device_class="problem",
        value_fn=lambda s, now: _on_off(bool(s.alerts)),
    ),
    StationEntityDescription(
        key="roster_version",
        component="sensor",
        name="Roster version",
        entity_category="diagnostic",
        icon="mdi:account-group",
        value_fn=lambda s, now: _number(s.roster.version) if s.roster else None,
    ),
    StationEntityDescription(
        key="roster_age",
        component="sensor",
        name="Roster age",
        device_class="duration",
        state_class="measurement",
        unit="h",
        precision=1,
        entity_category="diagnostic",
        value_fn=_roster_age_h,
    ),
    StationEntityDescription(
        key="roster_expiry",
        component="sensor",
        name="Roster expiry",
        device_class="timestamp",
        entity_category="diagnostic",
        value_fn=lambda s, now: _timestamp(s.roster.expires_at) if s.roster else None,
    ),
    StationEntityDescription(
        key="journal_backlog",
        component="sensor",
        name="Journal backlog",
        state_class="measurement",
        unit="events",
        entity_category="diagnostic",
        icon="mdi:tray-full",
        value_fn=lambda s, now: _number(max(0, s.journal_last_seq - s.journal_acked_seq)),
    ),
    StationEntityDescription(
        key="last_sync",
        component="sensor",
        name="Last sync",
        device_class="timestamp",
        entity_category="diagnostic",
        value_fn=lambda s, now: _timestamp(s.last_sync),
    ),
    StationEntityDescription(
        key="clock_trusted",
        component="binary_sensor",
        name="Clock trusted",
        entity_category="diagnostic",
        icon="mdi:clock-check-outline",
        value_fn=lambda s, now: _on_off(s.clock_trusted),
    ),
)

BAY_ENTITIES: tuple[BayEntityDescription, ...] = (
    BayEntityDescription(
        key="state",
        component="sensor",
        name="state",
        device_class="enum",
        options=BAY_STATES,
        value_fn=lambda b: _one_of(b.state, BAY_STATES),
    ),
    BayEntityDescription(
        key="vehicle_present",
        component="binary_sensor",
        name="vehicle present",
        device_class="occupancy",
        icon="mdi:car-side",
        value_fn=lambda b: _on_off(b.vehicle is not None),
    ),
    BayEntityDescription(
        key="vehicle",
        component="sensor",
        name="vehicle",
        icon="mdi:car-info",
        value_fn=lambda b: b.vehicle,
    ),
    BayEntityDescription(
        key="charging",
        component="binary_sensor",
        name="charging",
        device_class="battery_charging",
        value_fn=lambda b: _on_off(b.state == "charging"),
    ),
    BayEntityDescription(
        key="power",
        component="sensor",
        name="power",
        device_class="power",
        state_class="measurement",
        unit="W",
        precision=0,
        unavailable_when_none=True,
        value_fn=lambda b: _number(b.power_w, 1),
    ),
    BayEntityDescription(
        key="energy",
        component="sensor",
        name="lifetime energy",
        device_class="energy",
        state_class="total_increasing",
        unit="kWh",
        precision=2,
        unavailable_when_none=True,  # never 0: it would corrupt long-term statistics
        value_fn=lambda b: _number(b.energy_kwh, 3),
    ),
    BayEntityDescription(
        key="charger",
        component="switch",
        name="charger",
        device_class="outlet",
        unavailable_when_none=True,
        value_fn=lambda b: _on_off(b.relay_on),
        command=_set_charger,
    ),
    BayEntityDescription(
        key="release",
        component="button",
        name="maintenance release",
        icon="mdi:car-key",
        command=_maintenance_release,
    ),
    BayEntityDescription(
        key="plug_reachable",
        component="binary_sensor",
        name="plug reachable",
        device_class="connectivity",
        entity_category="diagnostic",
        value_fn=lambda b: _on_off(b.plug_reachable),
    ),
)
