"""The station's configuration: one YAML file, validated at the boundary.

Every model forbids unknown keys. Any string value may be ``${NAME}`` (or
contain it) to take a secret from the environment. Errors name the file, the
key path and what was expected, on one line.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from station.errors import ConfigError

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Location(_Model):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    address: str = ""


class StationSection(_Model):
    id: str = Field(pattern=_ID, title="Station id", description="Stable id, used in topics, events and the roster scope.")
    name: str = Field(title="Name shown to maintainers")
    location: Location | None = None
    timezone: str = Field("Europe/Paris", title="IANA time zone for local display")
    trust_system_clock: Literal["auto", "always", "never"] = Field(
        "auto",
        title="Trust the wall clock",
        description="auto: trusted once NTP reports synced or an authenticated central request carries a Date; always: for machines with a real-time clock; never: only central Dates count.",
    )


class PlugSection(_Model):
    transport: Literal["tcp", "rtu", "simulated"] = "tcp"
    host: str | None = Field(None, description="Modbus TCP host (transport tcp)")
    port: int = Field(502, ge=1, le=65535, description="Modbus TCP port")
    serial_port: str | None = Field(None, description="Serial device for RTU, e.g. /dev/ttyUSB0")
    baudrate: int = Field(9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    unit: int = Field(1, ge=0, le=247, description="Modbus device (unit) id")
    profile: str = Field("simulator", description="Device profile name in config/plugs/ (or a path to a profile file)")
    timeout_s: float = Field(1.0, gt=0, le=30)
    poll_interval_s: float = Field(1.0, gt=0, le=60)

    @model_validator(mode="after")
    def _transport_fields(self) -> PlugSection:
        if self.transport == "tcp" and not self.host:
            raise ValueError("transport tcp needs 'host'")
        if self.transport == "rtu" and not self.serial_port:
            raise ValueError("transport rtu needs 'serial_port'")
        return self


class ReleaseSection(_Model):
    kind: Literal["simulated", "modbus_coil", "homeassistant", "mqtt"] = "simulated"
    # modbus_coil: a coil on a relay module (same bus as the plug or another)
    host: str | None = None
    port: int = Field(502, ge=1, le=65535)
    serial_port: str | None = None
    unit: int = Field(1, ge=0, le=247)
    coil: int = Field(0, ge=0, le=65535)
    pulse_s: float = Field(1.0, gt=0, le=10)
    # homeassistant: lock.unlock or switch.turn_on on an entity
    entity_id: str | None = None
    lock_entity_id: str | None = Field(None, description="HA lock entity whose 'locked' state ends the trip")
    # mqtt: a command topic on the car's box
    topic: str | None = None
    payload: str = "UNLOCK"


class BaySection(_Model):
    id: str = Field(pattern=_ID)
    vehicle: str = Field(pattern=_ID, title="Home vehicle parked at this bay")
    plug: PlugSection = PlugSection(transport="simulated")
    release: ReleaseSection = ReleaseSection()


class ReaderSection(_Model):
    device: str = Field("simulated", description="nfcpy device string: usb, usb:072f:2200, tty:AMA0:pn532, udp:127.0.0.1:54321; or 'simulated'")
    technologies: list[Literal["106A", "106B", "212F", "424F"]] = Field(default_factory=lambda: ["106A"])
    interval_s: float = Field(0.1, gt=0, le=2)
    debounce_s: float = Field(5.0, ge=0, le=600, description="The same card again within this window is ignored")


class MqttSection(_Model):
    url: str = Field(description="mqtt://[user:password@]host[:port]")
    discovery_prefix: str = "homeassistant"
    base_topic: str = "borne"
    keepalive_s: int = Field(30, ge=15, le=600)
    username: str | None = None
    password: str | None = None


class HomeAssistantSection(_Model):
    url: str = Field(description="Home Assistant base URL, e.g. http://homeassistant.local:8123")
    token: str = Field(description="Long-lived access token; use ${HA_TOKEN}")
    notify: bool = Field(True, description="Raise persistent notifications for alerts")


class TokenEntry(_Model):
    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the bearer token")
    trust_date: bool = Field(True, description="Requests with this token may make the wall clock trusted by their Date "
                                               "(true for the central server; false for an operator's laptop)")


class ApiSection(_Model):
    listen: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    tokens: list[TokenEntry] = Field(default_factory=list)
    max_body_bytes: int = Field(8 * 1024 * 1024, gt=0)


class KeyEntry(_Model):
    key_id: str = Field(min_length=1, max_length=64)
    public_key: str = Field(description="Ed25519 public key, base64 of the 32 raw bytes")

    @field_validator("public_key")
    @classmethod
    def _ed25519(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not base64") from None
        if len(raw) != 32:
            raise ValueError(f"an Ed25519 public key has 32 bytes, this one {len(raw)}")
        return value


class CentralSection(_Model):
    keys: list[KeyEntry] = Field(default_factory=list, description="Keys that sign roster and reservations documents")
    card_key: str = Field(description="Deployment secret for card refs (HMAC-SHA256 of the UID); use ${BORNE_CARD_KEY}")
    issuer_keys: list[KeyEntry] = Field(default_factory=list, description="Town-hall keys that sign NFC card records")
    url: str | None = Field(None, description="Central server base URL, for sync-now (optional)")


class PolicySection(_Model):
    early_grace_min: float = Field(15, ge=0, le=240)
    late_grace_min: float = Field(15, ge=0, le=240)
    walk_up: bool = True
    walk_up_horizon_min: float = Field(60, ge=0, le=1440, description="A walk-up needs no reservation of that car starting within this time")
    offline_unknown_cards: Literal["refuse"] = "refuse"
    plug_in_alert_min: float = Field(5, gt=0, le=120, description="Raise vehicle.not_plugged if no power this long after a return")
    charging_threshold_w: float = Field(100, gt=0)
    standby_w: float = Field(15, ge=0)
    complete_after_min: float = Field(10, gt=0)
    switch_off_when_complete: bool = True
    overcurrent_a: float = Field(10, gt=0)
    unknown_card_limit_per_min: int = Field(10, ge=1)
    lockout_s: float = Field(30, gt=0, description="First lockout; doubles on each repeat, up to 1 hour")
    roster_expiry_warning_h: float = Field(24, ge=0)
    journal_retention_days: float = Field(30, ge=0, description="Acknowledged events are kept this long, then pruned")


class TariffSection(_Model):
    free_minutes: int = Field(30, ge=0)
    step_minutes: int = Field(30, gt=0)
    step_cents: int = Field(50, ge=0)
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")


class Config(_Model):
    station: StationSection
    data_dir: Path
    bays: list[BaySection] = Field(min_length=1)
    reader: ReaderSection = ReaderSection()
    mqtt: MqttSection | None = None
    homeassistant: HomeAssistantSection | None = None
    api: ApiSection = ApiSection()
    central: CentralSection
    policy: PolicySection = PolicySection()
    tariff: TariffSection = TariffSection()

    @field_validator("bays")
    @classmethod
    def _unique_bays(cls, bays: list[BaySection]) -> list[BaySection]:
        for attr in ("id", "vehicle"):
            seen: set[str] = set()
            for bay in bays:
                value = getattr(bay, attr)
                if value in seen:
                    raise ValueError(f"duplicate bay {attr} {value!r}")
                seen.add(value)
        return bays


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: Any, path: str, source: str, env: dict[str, str]) -> Any:
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise ConfigError(f"{source}: {path}: environment variable {name} is not set")
            return env[name]

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{path}.{k}" if path else str(k), source, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]", source, env) for i, v in enumerate(value)]
    return value


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(data: Any, *, source: str = "<config>", env: dict[str, str] | None = None) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level")
    data = _expand(data, "", source, dict(os.environ) if env is None else env)
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = _loc(tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-"))))
        kind = first["type"]
        if kind == "extra_forbidden":
            msg = "unknown key"
        elif kind == "missing":
            msg = "required key is missing"
        else:
            msg = first["msg"]
            if "input" in first and not isinstance(first["input"], dict | list):
                msg += f" (got {first['input']!r})"
        more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise ConfigError(f"{source}: {where}: {msg}{more}") from None


def load_config(path: str | Path, *, env: dict[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: {where}invalid YAML: {problem}") from None
    config = parse_config(data, source=str(path), env=env)
    if not config.data_dir.is_absolute():
        config = config.model_copy(update={"data_dir": (path.parent / config.data_dir).resolve()})
    return config
