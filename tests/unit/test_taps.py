"""Debounce and the unknown-card rate limit (TapGate), on a manual clock."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from station.model import Reason
from station.taps import MAX_LOCKOUT_S, TapGate


class Clock:
    """Monotonic time only, moved by hand (synchronous, for hypothesis)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def now(self):  # pragma: no cover - not used by TapGate
        raise AssertionError

    async def sleep(self, seconds: float) -> None:  # pragma: no cover
        raise AssertionError


def gate(clock: Clock, *, debounce_s: float = 5, limit: int = 10, lockout_s: float = 30, quiet_s: float = 3600) -> TapGate:
    return TapGate(debounce_s, limit, lockout_s, clock, quiet_s=quiet_s)


def flood(g: TapGate, n: int) -> list[bool]:
    return [g.record_refusal() for _ in range(n)]


def test_same_card_within_debounce_is_a_duplicate() -> None:
    clock = Clock()
    g = gate(clock)
    assert g.admit("a") is None
    clock.t += 4.9
    assert g.admit("a") is Reason.DUPLICATE_TAP
    assert g.admit("b") is None
    clock.t += 0.1
    assert g.admit("a") is None  # 5 s after the admitted tap, not after the duplicate


def test_zero_debounce_admits_everything() -> None:
    g = gate(Clock(), debounce_s=0)
    assert [g.admit("a") for _ in range(3)] == [None, None, None]


def test_lockout_after_the_limit() -> None:
    clock = Clock()
    g = gate(clock)
    assert flood(g, 10) == [False] * 10
    assert g.locked_until is None
    assert g.record_refusal() is True
    assert g.locked_until == clock.t + 30
    assert g.admit("anyone") is Reason.RATE_LIMITED
    assert g.record_refusal() is False  # no new lockout while locked
    clock.t += 30
    assert g.locked_until is None
    assert g.admit("anyone") is None


def test_refusals_older_than_a_minute_do_not_count() -> None:
    clock = Clock()
    g = gate(clock)
    for _ in range(10):
        g.record_refusal()
        clock.t += 7  # 10 in 70 s: never 11 within 60 s
    assert flood(g, 1) == [False]
    assert g.locked_until is None


def test_lockout_doubles_up_to_an_hour_then_resets_after_quiet() -> None:
    clock = Clock()
    g = gate(clock)
    lengths = []
    for _ in range(10):
        assert flood(g, 11)[-1] is True
        until = g.locked_until
        assert until is not None
        lengths.append(until - clock.t)
        clock.t = until
    assert lengths == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    clock.t += 3600  # quiet for an hour after the last lockout ended
    flood(g, 11)
    assert g.locked_until == clock.t + 30


def test_count_starts_again_after_a_lockout() -> None:
    clock = Clock()
    g = gate(clock)
    flood(g, 11)
    clock.t += 30
    assert flood(g, 10) == [False] * 10  # the ten before the lockout are forgotten
    assert g.record_refusal() is True


def test_unknown_rate_per_minute() -> None:
    clock = Clock()
    g = gate(clock, limit=100)
    flood(g, 5)
    clock.t += 30
    flood(g, 3)
    assert g.unknown_rate_per_min() == 8
    clock.t += 30
    assert g.unknown_rate_per_min() == 3
    clock.t += 30
    assert g.unknown_rate_per_min() == 0


def test_rate_counts_refusals_during_a_lockout() -> None:
    g = gate(Clock(), limit=2)
    flood(g, 5)
    assert g.unknown_rate_per_min() == 5


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        TapGate(5, 0, 30, Clock())
    with pytest.raises(ValueError):
        TapGate(5, 10, 0, Clock())


def test_longer_first_lockout_than_an_hour_is_kept() -> None:
    clock = Clock()
    g = gate(clock, limit=1, lockout_s=7200)
    flood(g, 2)
    assert g.locked_until == clock.t + 7200


class TapGateMachine(RuleBasedStateMachine):
    """A model: the gate against a plain list of events."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.limit = 3
        self.gate = gate(self.clock, debounce_s=5, limit=self.limit, lockout_s=10, quiet_s=100)
        self.admitted: dict[str, float] = {}
        self.refusals: list[float] = []
        self.lock_end: float | None = None
        self.last_length = 0.0
        self.strikes = 0

    def locked(self) -> bool:
        return self.lock_end is not None and self.clock.t < self.lock_end

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 4.9, 5.0, 9.0, 30.0, 61.0, 200.0]))
    def wait(self, seconds: float) -> None:
        self.clock.t += seconds

    @rule(key=st.sampled_from("abc"))
    def tap(self, key: str) -> None:
        result = self.gate.admit(key)
        if self.locked():
            assert result is Reason.RATE_LIMITED
        elif key in self.admitted and self.clock.t - self.admitted[key] < 5:
            assert result is Reason.DUPLICATE_TAP
        else:
            assert result is None
            self.admitted[key] = self.clock.t

    @rule()
    def refuse(self) -> None:
        was_locked = self.locked()
        started = self.gate.record_refusal()
        self.refusals.append(self.clock.t)
        if was_locked:
            assert not started
            return
        if started:
            until = self.gate.locked_until
            assert until is not None
            length = round(until - self.clock.t, 6)
            assert length in (10, 20, 40, 80, 160, 320, 640, 1280, 2560, MAX_LOCKOUT_S)
            if self.lock_end is not None and self.clock.t - self.lock_end < 100:
                assert length == min(2 * self.last_length, MAX_LOCKOUT_S)
            else:
                assert length == 10
            self.lock_end, self.last_length = until, length

    @invariant()
    def lock_matches(self) -> None:
        until = self.gate.locked_until
        assert (until is not None) == self.locked()

    @invariant()
    def rate_is_last_minute(self) -> None:
        expected = sum(1 for t in self.refusals if self.clock.t - t < 60)
        assert self.gate.unknown_rate_per_min() == expected

    @precondition(lambda self: not self.locked())
    @invariant()
    def never_more_than_limit_unpunished(self) -> None:
        # outside a lockout, at most `limit` refusals since the last lockout within the minute
        since = self.lock_end if self.lock_end is not None else float("-inf")
        recent = [t for t in self.refusals if self.clock.t - t < 60 and t >= since]
        assert len(recent) <= self.limit


TestTapGateMachine = TapGateMachine.TestCase
TestTapGateMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
