"""Modbus device profiles: a plug's register map as data (``config/plugs/*.yaml``).

A profile says where the relay is (a coil, or a holding register with on/off
values) and where each meter point is (function, address, data type, word
order, scale). Relay and meter may answer on different unit ids (an energy
meter and a relay module on one RS-485 bus): each has either an absolute
``unit`` or a ``unit_offset`` from the bay's configured unit.

Profiles are validated at load time (pydantic, unknown keys are errors); a bad
profile raises :class:`ProfileError` naming the profile and the register.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from station.errors import ConfigError, PermanentIntegrationError

DataType = Literal["uint16", "int16", "uint32", "int32", "float32"]
WORDS: dict[str, int] = {"uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "float32": 2}
METER_POINTS = ("power_w", "voltage_v", "current_a", "energy_kwh")

# Where profiles are looked up, first match wins: $BORNE_PLUG_PROFILES (a folder),
# /etc/borne/plugs (an installer's own), the repository's config/plugs, and
# ./config/plugs (an installed copy run from its folder, as in the docker image).
DEFAULT_DIRS: tuple[Path, ...] = tuple(
    p
    for p in (
        Path(os.environ["BORNE_PLUG_PROFILES"]) if os.environ.get("BORNE_PLUG_PROFILES") else None,
        Path("/etc/borne/plugs"),
        Path(__file__).resolve().parents[2] / "config" / "plugs",
        Path.cwd() / "config" / "plugs",
    )
    if p is not None
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ProfileError(ConfigError, PermanentIntegrationError):
    """A device profile is missing or invalid.

    Both a configuration error (``borne check-config`` reports it) and a
    permanent integration error (retrying will not help).
    """


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Addressed(_Model):
    unit: int | None = Field(None, ge=0, le=247, description="Absolute unit id; overrides the bay's unit")
    unit_offset: int = Field(0, ge=-247, le=247, description="Added to the bay's unit when 'unit' is not set")

    @model_validator(mode="after")
    def _one_unit(self) -> _Addressed:
        if self.unit is not None and self.unit_offset:
            raise ValueError("give either 'unit' or 'unit_offset', not both")
        return self

    def unit_for(self, bay_unit: int) -> int:
        unit = self.unit if self.unit is not None else bay_unit + self.unit_offset
        if not 0 <= unit <= 247:
            raise ValueError(f"unit {unit} out of range 0..247")
        return unit


class Relay(_Addressed):
    kind: Literal["coil", "register"] = Field(
        "coil", description="coil: FC05 write, FC01 read; register: FC06 write, FC03 read"
    )
    address: int = Field(ge=0, le=65535)
    on_value: int = Field(1, ge=0, le=65535, description="register kind: value meaning on")
    off_value: int = Field(0, ge=0, le=65535, description="register kind: value meaning off")

    @model_validator(mode="after")
    def _values(self) -> Relay:
        if self.on_value == self.off_value:
            raise ValueError("on_value and off_value must differ")
        if self.kind == "coil" and (self.on_value, self.off_value) != (1, 0):
            raise ValueError("on_value/off_value apply to kind 'register' only")
        return self

    def describe(self) -> str:
        return f"relay {self.kind} {self.address} (0x{self.address:04X})"


class Point(_Model):
    function: Literal["holding", "input"] = Field(description="holding: FC03, input: FC04")
    address: int = Field(ge=0, le=65535)
    type: DataType
    word_order: Literal["big", "little"] = Field("big", description="big: high word first")
    scale: float = Field(1.0, description="value = raw * scale")
    min: float | None = Field(None, description="Lowest plausible value; below is a decoding error")
    max: float | None = Field(None, description="Highest plausible value; above is a decoding error")

    @property
    def count(self) -> int:
        return WORDS[self.type]

    @model_validator(mode="after")
    def _check(self) -> Point:
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.address + self.count > 65536:
            raise ValueError(f"{self.type} at {self.address} runs past register 65535")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        return self


class Meter(_Addressed):
    power_w: Point
    voltage_v: Point | None = None
    current_a: Point | None = None
    energy_kwh: Point | None = None
    max_gap: int = Field(
        0,
        ge=0,
        le=32,
        description="Read points of one function in one request when at most this many unused registers lie between them (0: only adjacent points)",
    )

    def points(self) -> dict[str, Point]:
        return {name: p for name in METER_POINTS if (p := getattr(self, name)) is not None}


class PlugProfile(_Model):
    name: str = Field(pattern=_NAME.pattern)
    description: str = ""
    source: list[str] = Field(min_length=1, description="Where the register map comes from (URLs)")
    verified: bool = Field(True, description="False until the map has been checked against a real device")
    notes: list[str] = Field(default_factory=list)
    relay: Relay
    meter: Meter


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-"))) or "(top level)"


def parse_profile(data: object, *, source: str) -> PlugProfile:
    """Validate a profile mapping; ``source`` names it in errors."""
    if not isinstance(data, dict):
        raise ProfileError(f"profile {source}: expected a mapping at the top level")
    try:
        return PlugProfile.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        what = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        if first["type"] not in ("extra_forbidden", "missing") and not isinstance(first.get("input"), dict | list):
            what += f" (got {first.get('input')!r})"
        more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise ProfileError(f"profile {source}: {_where(first['loc'])}: {what}{more}") from None


def find_profile(name_or_path: str | Path, dirs: Iterable[Path] = DEFAULT_DIRS) -> Path:
    """A profile name (``eastron-sdm120-relay``) looked up in ``dirs``, or a path."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or text.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        if not path.is_file():
            raise ProfileError(f"profile {text}: no such file")
        return path
    if not _NAME.match(text):
        raise ProfileError(f"profile {text!r}: not a valid profile name")
    searched = []
    for folder in dirs:
        path = folder / f"{text}.yaml"
        if path.is_file():
            return path
        searched.append(str(folder))
    raise ProfileError(f"profile {text!r}: unknown device profile (searched {', '.join(searched)})")


def load_profile(name_or_path: str | Path, dirs: Iterable[Path] = DEFAULT_DIRS) -> PlugProfile:
    path = find_profile(name_or_path, dirs)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ProfileError(f"profile {path}: cannot read: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ProfileError(f"profile {path}: {where}invalid YAML: {getattr(err, 'problem', None) or err}") from None
    return parse_profile(data, source=str(path))
