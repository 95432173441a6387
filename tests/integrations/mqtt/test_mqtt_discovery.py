"""Discovery payloads, checked field by field against what Home Assistant's
MQTT platforms require (homeassistant/components/mqtt/{sensor,binary_sensor,
switch,button,select,event}.py and sensor/const.py: required keys, device
classes, unit and state-class combinations).

These run without a broker: they check the payloads the bridge builds.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest
import yaml

from integrations.mqtt.discovery import DeviceInfo, bind_entities, discovery_message
from integrations.mqtt.entities import BAY_ENTITIES, STATION_ENTITIES
from integrations.mqtt.topics import BrokerAddress, Topics, parse_broker_url, safe_id
from station.config import parse_config
from station.errors import ConfigError

# -- what Home Assistant accepts ----------------------------------------------

REQUIRED = {
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "switch": {"command_topic"},
    "button": {"command_topic"},
    "select": {"command_topic", "options"},
    "event": {"state_topic", "event_types"},
}
DEVICE_CLASSES = {
    "binary_sensor": {
        "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door",
        "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug",
        "power", "presence", "problem", "running", "safety", "smoke", "sound", "tamper", "update",
        "vibration", "window",
    },
    "switch": {"outlet", "switch"},
    "button": {"identify", "restart", "update"},
    "event": {"button", "doorbell", "motion"},
    "select": set(),
}
# sensor device class -> (allowed units, allowed state classes); None = any
SENSOR_CLASSES: dict[str, tuple[set[str | None], set[str] | None]] = {
    "power": ({"W", "kW", "mW", "MW", "GW", "TW", "BTU/h"}, {"measurement"}),
    "energy": ({"Wh", "kWh", "MWh", "GWh", "TWh", "J", "kJ", "MJ", "GJ", "cal", "kcal", "Mcal", "Gcal"}, {"total", "total_increasing"}),
    "duration": ({"d", "h", "min", "s", "ms"}, None),
    "timestamp": ({None}, set()),
    "enum": ({None}, set()),
}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
ENTITY_CATEGORIES = {"config", "diagnostic"}
TOPIC_ID = re.compile(r"^[a-zA-Z0-9_-]+$")

DEVICE = DeviceInfo(station_id="hede", name="Borne Hédé", sw_version="0.1.0")
TOPICS = Topics.for_station(base_topic="borne", discovery_prefix="homeassistant", station_id="hede")


def all_messages(bays: tuple[str, ...] = ("1", "2")) -> list[tuple[str, dict]]:
    return [discovery_message(e, TOPICS, DEVICE, "0.1.0") for e in bind_entities(bays)]


MESSAGES = all_messages()


def ids(messages: list[tuple[str, dict]]) -> list[str]:
    return [payload["unique_id"] for _, payload in messages]


@pytest.mark.parametrize(("topic", "payload"), MESSAGES, ids=ids(MESSAGES))
def test_every_payload_has_what_its_component_requires(topic: str, payload: dict) -> None:
    prefix, component, node_id, object_id, config = topic.split("/")
    assert (prefix, config) == ("homeassistant", "config")
    assert component in REQUIRED
    assert TOPIC_ID.match(node_id) and TOPIC_ID.match(object_id)
    assert REQUIRED[component] <= payload.keys(), f"{component} needs {REQUIRED[component] - payload.keys()}"
    # one device per station, fully described
    assert payload["device"] == {
        "identifiers": ["borne_hede"],
        "name": "Borne Hédé",
        "model": "borne car-sharing station",
        "manufacturer": "borne",
        "sw_version": "0.1.0",
    }
    # availability: the station's status topic, alone or together with the entity's own
    if "availability" in payload:
        assert "availability_topic" not in payload  # HA: must not be used together
        assert payload["availability_mode"] == "all"
        topics = [a["topic"] for a in payload["availability"]]
        assert topics[0] == "borne/hede/status"
        for availability in payload["availability"]:
            assert (availability["payload_available"], availability["payload_not_available"]) == ("online", "offline")
    else:
        assert payload["availability_topic"] == "borne/hede/status"
        assert (payload["payload_available"], payload["payload_not_available"]) == ("online", "offline")
    assert payload["unique_id"].startswith("borne_hede_")
    assert payload["name"] and not payload["name"].startswith(payload["device"]["name"])
    assert payload.get("entity_category", "diagnostic") in ENTITY_CATEGORIES
    if component in ("sensor", "binary_sensor"):
        assert payload.get("entity_category") != "config"  # read-only entities cannot be config
    assert "command_topic" not in payload or payload["retain"] is False
    json.dumps(payload)  # serialisable as is


@pytest.mark.parametrize(("topic", "payload"), MESSAGES, ids=ids(MESSAGES))
def test_device_state_class_and_unit_are_a_valid_combination(topic: str, payload: dict) -> None:
    component = topic.split("/")[1]
    device_class = payload.get("device_class")
    if component != "sensor":
        assert "state_class" not in payload and "unit_of_measurement" not in payload
        if device_class is not None:
            assert device_class in DEVICE_CLASSES[component]
        return
    state_class = payload.get("state_class")
    unit = payload.get("unit_of_measurement")
    if state_class is not None:
        assert state_class in STATE_CLASSES
    if "options" in payload:  # HA: options only with enum, never with a unit or state class
        assert device_class == "enum" and payload["options"] and state_class is None and unit is None
    if device_class is not None:
        assert device_class in SENSOR_CLASSES, f"untested sensor device class {device_class}"
        units, states = SENSOR_CLASSES[device_class]
        assert unit in units
        if states is not None and state_class is not None:
            assert state_class in states


def test_the_entity_set() -> None:
    assert sorted(ids(all_messages(("1",)))) == sorted(
        [
            "borne_hede_state", "borne_hede_mode", "borne_hede_sync_now", "borne_hede_taps",
            "borne_hede_unknown_card_rate", "borne_hede_problem", "borne_hede_roster_version",
            "borne_hede_roster_age", "borne_hede_roster_expiry", "borne_hede_journal_backlog",
            "borne_hede_last_sync", "borne_hede_clock_trusted",
            "borne_hede_1_state", "borne_hede_1_vehicle_present", "borne_hede_1_vehicle",
            "borne_hede_1_charging", "borne_hede_1_power", "borne_hede_1_energy", "borne_hede_1_charger",
            "borne_hede_1_release", "borne_hede_1_plug_reachable",
        ]
    )
    assert len(set(ids(MESSAGES))) == len(MESSAGES) == len(STATION_ENTITIES) + 2 * len(BAY_ENTITIES)
    assert len({t for t, _ in MESSAGES}) == len(MESSAGES)


def by_uid(uid: str) -> tuple[str, dict]:
    return next(m for m in MESSAGES if m[1]["unique_id"] == uid)


def test_power_and_energy_suit_the_energy_dashboard() -> None:
    topic, power = by_uid("borne_hede_1_power")
    assert topic == "homeassistant/sensor/borne_hede/1_power/config"
    assert (power["device_class"], power["state_class"], power["unit_of_measurement"]) == ("power", "measurement", "W")
    topic, energy = by_uid("borne_hede_2_energy")
    assert topic == "homeassistant/sensor/borne_hede/2_energy/config"
    assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) == ("energy", "total_increasing", "kWh")
    # unavailable, never 0, when the meter is unknown: its own availability topic, both required
    assert energy["availability"][1]["topic"] == "borne/hede/bay/2/energy/available"
    assert energy["availability_mode"] == "all"
    assert energy["state_topic"] == "borne/hede/bay/2/energy/state"


def test_controls() -> None:
    _, charger = by_uid("borne_hede_1_charger")
    assert charger["command_topic"] == "borne/hede/bay/1/charger/set"
    on_off = (charger["payload_on"], charger["payload_off"], charger["state_on"], charger["state_off"])
    assert on_off == ("ON", "OFF", "ON", "OFF")
    _, release = by_uid("borne_hede_1_release")
    assert release["command_topic"] == "borne/hede/bay/1/release/set" and release["payload_press"] == "PRESS"
    assert "state_topic" not in release
    _, mode = by_uid("borne_hede_mode")
    assert mode["options"] == ["normal", "maintenance", "out_of_service"]
    assert mode["state_topic"] == "borne/hede/mode/state"
    _, sync = by_uid("borne_hede_sync_now")
    assert sync["command_topic"] == "borne/hede/sync_now/set"
    _, taps = by_uid("borne_hede_taps")
    assert taps["event_types"] == ["allowed", "refused"] and "command_topic" not in taps


def test_diagnostics_are_marked() -> None:
    for key in ("roster_version", "roster_age", "roster_expiry", "journal_backlog", "last_sync", "clock_trusted"):
        assert by_uid(f"borne_hede_{key}")[1]["entity_category"] == "diagnostic"
    assert by_uid("borne_hede_last_sync")[1]["device_class"] == "timestamp"


def test_odd_station_ids_give_valid_discovery_topics() -> None:
    topics = Topics.for_station(base_topic="/borne/", discovery_prefix="ha", station_id="st.1")
    assert topics.node_id == "borne_st_1"
    assert topics.status == "borne/st.1/status"
    assert topics.discovery("sensor", "power", "b.2") == "ha/sensor/borne_st_1/b_2_power/config"
    assert safe_id("a b/c+#") == "a_b_c__"


def test_broker_url() -> None:
    assert parse_broker_url("mqtt://10.0.0.2") == BrokerAddress(
        host="10.0.0.2", port=1883, tls=False, username=None, password=None
    )
    assert parse_broker_url("mqtts://u%40x:p%3Aw@broker:8884") == BrokerAddress(
        host="broker", port=8884, tls=True, username="u@x", password="p:w"
    )
    assert parse_broker_url("mqtt://u:p@h", username="other").username == "other"
    for bad in ("http://h", "mqtt://", "mqtt://h:99999"):
        with pytest.raises(ConfigError):
            parse_broker_url(bad)


# -- the shipped Home Assistant files ---------------------------------------------

CONFIG_DIR = Path(__file__).resolve().parents[3] / "config" / "homeassistant"


def _slug(text: str) -> str:
    """Home Assistant's slugify, for the ASCII-foldable names used here."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", folded.lower()).strip("_")


def _entity_ids(node: object) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("entity", "entity_id") and isinstance(value, str):
                found.add(value)
            else:
                found |= _entity_ids(value)
    elif isinstance(node, list):
        for item in node:
            found |= {item} if isinstance(item, str) and re.match(r"^[a-z_]+\.[a-z0-9_]+$", item) else _entity_ids(item)
    return found


def test_dashboard_names_only_entities_the_bridge_creates() -> None:
    device = DeviceInfo(station_id="hede", name="Hédé", sw_version="0.1.0")
    created = {
        f"{topic.split('/')[1]}.{_slug(device.name + ' ' + payload['name'])}"
        for topic, payload in (discovery_message(e, TOPICS, device, "0.1.0") for e in bind_entities(("1",)))
    }
    used = _entity_ids(yaml.safe_load((CONFIG_DIR / "dashboard.yaml").read_text()))
    assert used and used <= created, f"unknown entities: {sorted(used - created)}"


def test_config_fragment_is_valid_station_config() -> None:
    fragment = yaml.safe_load((CONFIG_DIR / "station-fragment.example.yaml").read_text())
    document = {
        "station": {"id": "hede", "name": "Hédé"},
        "data_dir": "/tmp/borne-fragment-test",
        "central": {"card_key": "k"},
        **fragment,
    }
    config = parse_config(document, source="fragment", env={"MQTT_PASSWORD": "pw", "HA_TOKEN": "tok"})
    assert config.mqtt is not None and config.mqtt.password == "pw"
    assert parse_broker_url(config.mqtt.url).port == 1883
    assert config.homeassistant is not None and config.homeassistant.token == "tok"
    assert [b.release.kind for b in config.bays] == ["homeassistant", "mqtt"]
