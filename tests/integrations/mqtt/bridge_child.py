"""A station process for the last-will test: runs an MqttBridge on a fake
station until it is killed. Usage: python bridge_child.py MQTT_URL"""

from __future__ import annotations

import asyncio
import sys

from integrations.mqtt import Backoff, MqttBridge
from station.clock import SystemClock
from station.config import MqttSection
from tests.integrations.fake_station import FakeStation


async def main(url: str) -> None:
    bridge = MqttBridge(
        MqttSection(url=url, keepalive_s=15),
        FakeStation(),
        SystemClock(),
        "hede",
        backoff=Backoff(initial=0.05, cap=0.4),
    )
    await bridge.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
