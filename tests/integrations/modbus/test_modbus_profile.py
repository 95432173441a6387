"""Device profiles (config/plugs/*.yaml) and register decoding."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.modbus.codec import DecodeError, decode, encode
from integrations.modbus.plug import plan_reads
from integrations.modbus.profile import Point, ProfileError, load_profile
from station.errors import ConfigError, PermanentIntegrationError

# The repository's folder by path: DEFAULT_DIRS[0] may be $BORNE_PLUG_PROFILES or /etc/borne/plugs.
SHIPPED = sorted(p.stem for p in (Path(__file__).resolve().parents[3] / "config" / "plugs").glob("*.yaml"))


def test_the_three_profiles_ship() -> None:
    assert {"simulator", "eastron-sdm120-relay", "netio-powercable-modbus-101x"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load_and_cite_a_source(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert profile.source and all(s.strip() for s in profile.source)
    assert plan_reads(profile, 1)


def test_sdm120_profile_has_separate_units_and_groups_reads() -> None:
    profile = load_profile("eastron-sdm120-relay")
    assert profile.relay.unit_for(1) == 2 and profile.meter.unit_for(1) == 1
    spans = plan_reads(profile, 1)
    assert [(s.start, s.count) for s in spans] == [(0x0000, 14), (0x0156, 2)]


def test_wrong_profile_name_names_the_profile() -> None:
    with pytest.raises(ProfileError, match=r"'no-such-plug'.*unknown device profile"):
        load_profile("no-such-plug")


def test_profile_error_is_both_config_and_permanent() -> None:
    with pytest.raises(ConfigError):
        load_profile("no-such-plug")
    with pytest.raises(PermanentIntegrationError):
        load_profile("no-such-plug")


def test_path_traversal_is_not_a_name() -> None:
    with pytest.raises(ProfileError):
        load_profile("../../etc/passwd")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


GOOD = """
name: bad
source: [here]
relay: {address: 0}
meter:
  power_w: {function: input, address: 0, type: float32}
"""


def test_a_path_loads(tmp_path: Path) -> None:
    assert load_profile(_write(tmp_path, GOOD)).meter.energy_kwh is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("relay: [unclosed", r"bad.yaml: line \d+, column \d+: invalid YAML"),
        (GOOD.replace("address: 0, type", "address: 70000, type"), r"bad.yaml: meter\.power_w\.address: .*65535.*70000"),
        (GOOD.replace("type: float32", "type: float64"), r"meter\.power_w\.type"),
        (GOOD.replace("function: input", "function: coils"), r"meter\.power_w\.function"),
        (GOOD.replace("address: 0, type", "address: 65535, type"), r"meter\.power_w: .*runs past register 65535"),
        (GOOD + "  colour: red\n", r"meter\.colour: unknown key"),
        (GOOD.replace("relay: {address: 0}", "relay: {address: 0, unit: 2, unit_offset: 1}"), r"relay: .*either 'unit' or 'unit_offset'"),
        (GOOD.replace("relay: {address: 0}", "relay: {kind: register, address: 3, on_value: 1, off_value: 1}"), r"relay: .*must differ"),
        (GOOD.replace("source: [here]", ""), r"source: required|source: Field required"),
        ("- a list\n", r"expected a mapping"),
    ],
)
def test_unparsable_profiles_name_the_register(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        load_profile(_write(tmp_path, text))


# -- codec ------------------------------------------------------------------


def _point(type_: str, word_order: str = "big", scale: float = 1.0, **kw: float) -> Point:
    return Point(function="input", address=0, type=type_, word_order=word_order, scale=scale, **kw)  # type: ignore[arg-type]


def test_decode_word_orders() -> None:
    big = list(struct.unpack(">2H", struct.pack(">f", 230.5)))
    assert decode(_point("float32"), big) == 230.5
    assert decode(_point("float32", "little"), big[::-1]) == 230.5
    assert decode(_point("int32"), [0xFFFF, 0xFFFE]) == -2
    assert decode(_point("uint32", "little"), [0x0002, 0x0001]) == 0x10002
    assert decode(_point("int16", scale=0.1), [0xFFF6]) == pytest.approx(-1.0)
    assert decode(_point("uint16", scale=0.01), [23012]) == pytest.approx(230.12)


@pytest.mark.parametrize(
    ("registers", "reason"),
    [
        ([0x7FC0, 0x0000], "not a measurement"),  # NaN
        ([0x7F80, 0x0000], "not a measurement"),  # +inf
        ([0x0000, 2301], "implausibly tiny"),  # low word first read as big: subnormal
        ([2301, 0x0000], "implausibly tiny"),  # a uint16 register read as float32
        ([0x43E6], "expected 2 registers, got 1"),
    ],
)
def test_decode_refuses_wrong_data(registers: list[int], reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(_point("float32"), registers)


def test_decode_refuses_implausible_values() -> None:
    with pytest.raises(DecodeError, match="outside the plausible range"):
        decode(_point("uint16", max=300), [2301])


@given(
    st.sampled_from(["uint16", "int16", "uint32", "int32", "float32"]),
    st.sampled_from(["big", "little"]),
    st.floats(min_value=-3000, max_value=3000, allow_nan=False).filter(lambda v: v == 0 or abs(v) > 1e-6),
)
def test_encode_decode_round_trip(type_: str, word_order: str, value: float) -> None:
    """(Tiny non-zero floats are refused by design, so the strategy skips them.)"""
    if type_.startswith("uint"):
        value = abs(value)
    point = _point(type_, word_order, scale=0.1)
    decoded = decode(point, encode(point, value))
    assert math.isclose(decoded, value, rel_tol=1e-6, abs_tol=0.051)
