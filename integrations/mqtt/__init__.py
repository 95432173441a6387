"""Home Assistant over MQTT: discovery, states, commands, MQTT release actuator."""

from integrations.mqtt.backoff import Backoff
from integrations.mqtt.bridge import LinkState, MqttBridge
from integrations.mqtt.release import MqttReleaseActuator

__all__ = ["Backoff", "LinkState", "MqttBridge", "MqttReleaseActuator"]
