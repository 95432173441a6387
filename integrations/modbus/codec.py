"""Registers <-> values for a profile :class:`Point`.

Decoding refuses what a meter never sends (NaN, infinity, a non-zero float
below 1e-9, which is what an integer register or the wrong word order read
as float32 looks like, or a value out of the point's plausible range): a wrong reading must be an error, never a
number.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from integrations.modbus.profile import Point

# No meter reports a quantity this small but non-zero; an integer register (or
# the wrong word order) read as float32 does (2301 in the high word: 1.5e-33).
_TINY = 1e-9

_FORMAT = {"uint16": "H", "int16": "h", "uint32": "I", "int32": "i", "float32": "f"}


class DecodeError(ValueError):
    """Registers that do not hold a plausible value of the point's type."""


def decode(point: Point, registers: Sequence[int]) -> float:
    if len(registers) != point.count:
        raise DecodeError(f"expected {point.count} registers, got {len(registers)}")
    words = list(registers)
    if point.word_order == "little":
        words.reverse()
    try:
        raw = struct.unpack(">" + _FORMAT[point.type], struct.pack(f">{len(words)}H", *words))[0]
    except struct.error as err:
        raise DecodeError(f"undecodable registers {list(registers)}: {err}") from None
    if point.type == "float32":
        if math.isnan(raw) or math.isinf(raw):
            raise DecodeError(f"{raw} is not a measurement")
        if raw != 0.0 and abs(raw) < _TINY:
            raise DecodeError(f"implausibly tiny float {raw!r} (registers {list(registers)}): wrong data type or word order?")
    value = raw * point.scale
    if (point.min is not None and value < point.min) or (point.max is not None and value > point.max):
        raise DecodeError(f"{value:g} outside the plausible range {point.min}..{point.max}")
    return float(value)


def encode(point: Point, value: float) -> list[int]:
    """The registers a device would hold for ``value`` (used by the simulator)."""
    raw: float | int = value / point.scale
    if point.type != "float32":
        raw = round(raw)
    words = list(struct.unpack(f">{point.count}H", struct.pack(">" + _FORMAT[point.type], raw)))
    if point.word_order == "little":
        words.reverse()
    return words
