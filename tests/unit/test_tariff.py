"""The trip tariff: examples from the issue and its properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.tariff import Tariff

DEFAULT = Tariff()

# Durations are drawn in whole milliseconds (the tariff's own resolution) and
# handed over as seconds, as the service does.
durations_ms = st.integers(min_value=0, max_value=30 * 24 * 3_600_000)  # up to a month
tariffs = st.builds(
    Tariff,
    free_minutes=st.integers(min_value=0, max_value=180),
    step_minutes=st.integers(min_value=1, max_value=240),
    step_cents=st.integers(min_value=0, max_value=1_000),
)


def hms(h: int, m: int, s: float) -> float:
    return h * 3600 + m * 60 + s


@pytest.mark.parametrize(
    ("duration_s", "cents"),
    [
        (0, 0),
        (hms(0, 0, 1), 0),
        (hms(0, 29, 59), 0),
        (hms(0, 30, 0), 0),
        (hms(0, 30, 1), 50),
        (hms(0, 45, 0), 50),
        (hms(1, 0, 0), 50),
        (hms(1, 0, 1), 100),
        (hms(1, 30, 0), 100),
        (hms(1, 30, 1), 150),
        (hms(3, 0, 0), 250),
        (hms(24, 0, 0), 47 * 50),
    ],
)
def test_default_tariff_examples(duration_s: float, cents: int) -> None:
    assert DEFAULT.price_cents(duration_s) == cents


def test_default_tariff_is_the_communes() -> None:
    assert (DEFAULT.free_minutes, DEFAULT.step_minutes, DEFAULT.step_cents, DEFAULT.currency) == (30, 30, 50, "EUR")


def test_float_noise_at_the_free_time_boundary_is_free() -> None:
    # Durations computed from two clocks carry float noise; a trip of "exactly"
    # 30 minutes must not cost a step because of it.
    assert DEFAULT.price_cents(1800.0000001) == 0
    assert DEFAULT.price_cents(1799.9999999) == 0
    assert DEFAULT.price_cents(1800.001) == 50


@pytest.mark.parametrize(
    ("tariff", "duration_s", "cents"),
    [
        (Tariff(free_minutes=0, step_minutes=15, step_cents=20), 0, 0),
        (Tariff(free_minutes=0, step_minutes=15, step_cents=20), 1, 20),
        (Tariff(free_minutes=0, step_minutes=15, step_cents=20), 15 * 60, 20),
        (Tariff(free_minutes=0, step_minutes=15, step_cents=20), 15 * 60 + 1, 40),
        (Tariff(free_minutes=60, step_minutes=60, step_cents=100), 3600, 0),
        (Tariff(free_minutes=60, step_minutes=60, step_cents=100), 3601, 100),
        (Tariff(free_minutes=60, step_minutes=60, step_cents=100), 3 * 3600 + 1, 300),
        (Tariff(free_minutes=10, step_minutes=30, step_cents=0), 10 * 3600, 0),
    ],
)
def test_configured_tariff_examples(tariff: Tariff, duration_s: float, cents: int) -> None:
    assert tariff.price_cents(duration_s) == cents


@pytest.mark.parametrize("duration_s", [-0.001, -1, -3600.0])
def test_negative_durations_are_rejected(duration_s: float) -> None:
    with pytest.raises(ValueError):
        DEFAULT.price_cents(duration_s)


@settings(max_examples=200, deadline=None)
@given(tariff=tariffs, a=durations_ms, b=durations_ms)
def test_price_is_monotone_in_duration(tariff: Tariff, a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert tariff.price_cents(lo / 1000) <= tariff.price_cents(hi / 1000)


@settings(max_examples=200, deadline=None)
@given(tariff=tariffs, data=st.data())
def test_free_time_costs_nothing(tariff: Tariff, data: st.DataObject) -> None:
    ms = data.draw(st.integers(min_value=0, max_value=tariff.free_minutes * 60_000))
    assert tariff.price_cents(ms / 1000) == 0


@settings(max_examples=200, deadline=None)
@given(tariff=tariffs, data=st.data())
def test_one_more_step_costs_one_more_step(tariff: Tariff, data: st.DataObject) -> None:
    free_ms = tariff.free_minutes * 60_000
    step_ms = tariff.step_minutes * 60_000
    ms = data.draw(st.integers(min_value=free_ms, max_value=free_ms + 20 * step_ms))
    assert tariff.price_cents((ms + step_ms) / 1000) == tariff.price_cents(ms / 1000) + tariff.step_cents


@settings(max_examples=200, deadline=None)
@given(tariff=tariffs, ms=durations_ms)
def test_price_is_a_whole_number_of_steps(tariff: Tariff, ms: int) -> None:
    price = tariff.price_cents(ms / 1000)
    assert isinstance(price, int)
    assert price >= 0
    if tariff.step_cents:
        assert price % tariff.step_cents == 0
    else:
        assert price == 0


@settings(max_examples=200, deadline=None)
@given(tariff=tariffs, ms=durations_ms)
def test_every_started_step_counts(tariff: Tariff, ms: int) -> None:
    """The closed form: ceil((d - free) / step) steps beyond the free time."""
    free_ms = tariff.free_minutes * 60_000
    step_ms = tariff.step_minutes * 60_000
    steps = 0 if ms <= free_ms else -(-(ms - free_ms) // step_ms)
    assert tariff.price_cents(ms / 1000) == steps * tariff.step_cents
    # One millisecond past a step boundary starts the next step.
    if ms > free_ms and (ms - free_ms) % step_ms == 0:
        assert tariff.price_cents((ms + 1) / 1000) == (steps + 1) * tariff.step_cents


@settings(max_examples=200, deadline=None)
@given(tariff=tariffs, seconds=st.floats(min_value=-1e7, max_value=-1e-3, allow_nan=False))
def test_any_negative_duration_is_rejected(tariff: Tariff, seconds: float) -> None:
    with pytest.raises(ValueError):
        tariff.price_cents(seconds)
