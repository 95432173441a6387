"""Topic layout of one station, and the broker URL.

Everything the station publishes lives under ``<base>/<station>/``::

    borne/hede/status                       online | offline (retained, last will)
    borne/hede/<key>/state                  station-level entity state
    borne/hede/bay/<bay>/<key>/state        bay-level entity state
    .../<key>/available                     online | offline, for entities that
                                            go unavailable rather than unknown
    .../<key>/set                           commands from Home Assistant

Discovery configs go to ``<prefix>/<component>/<node_id>/<object_id>/config``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from station.errors import ConfigError

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def safe_id(value: str) -> str:
    """Discovery node and object ids allow only ``[A-Za-z0-9_-]``."""
    return _UNSAFE.sub("_", value)


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def parse_broker_url(url: str, *, username: str | None = None, password: str | None = None) -> BrokerAddress:
    """``mqtt://[user:password@]host[:port]`` (or ``mqtts://``); explicit
    ``username``/``password`` win over the ones in the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(f"mqtt.url: expected mqtt://[user:password@]host[:port], got {url!r}")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as err:
        raise ConfigError(f"mqtt.url: bad port in {url!r}") from err
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=username if username is not None else (unquote(parts.username) if parts.username else None),
        password=password if password is not None else (unquote(parts.password) if parts.password else None),
    )


@dataclass(frozen=True, slots=True)
class Topics:
    base: str  # "<base_topic>/<station_id>"
    discovery_prefix: str
    node_id: str  # "borne_<station>", safe for discovery topics

    @classmethod
    def for_station(cls, *, base_topic: str, discovery_prefix: str, station_id: str) -> Topics:
        return cls(
            base=f"{base_topic.strip('/')}/{station_id}",
            discovery_prefix=discovery_prefix.strip("/"),
            node_id=safe_id(f"borne_{station_id}"),
        )

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def birth(self) -> str:
        """Where Home Assistant announces itself (``online``/``offline``)."""
        return f"{self.discovery_prefix}/status"

    def entity(self, key: str, bay: str | None) -> str:
        return f"{self.base}/{key}" if bay is None else f"{self.base}/bay/{bay}/{key}"

    def state(self, key: str, bay: str | None) -> str:
        return f"{self.entity(key, bay)}/state"

    def available(self, key: str, bay: str | None) -> str:
        return f"{self.entity(key, bay)}/available"

    def command(self, key: str, bay: str | None) -> str:
        return f"{self.entity(key, bay)}/set"

    def discovery(self, component: str, key: str, bay: str | None) -> str:
        object_id = safe_id(key if bay is None else f"{bay}_{key}")
        return f"{self.discovery_prefix}/{component}/{self.node_id}/{object_id}/config"
