"""The charge session state machine: each transition, then a hypothesis
``RuleBasedStateMachine`` feeding random readings, time steps and commands."""

from __future__ import annotations

import math

import pytest
from hypothesis import event as note
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from station.charging import ChargeEvent, ChargeParams, ChargeSession, ChargeState, Step
from station.model import PlugReading

P = ChargeParams()  # 100 W threshold, 15 W standby, 10 min to complete, 10 A, 5 min alert, 30 s retry, 3 retries


def r(power_w: float, *, relay: bool = True, current_a: float | None = None, voltage_v: float | None = None,
      energy_kwh: float | None = None) -> PlugReading:
    return PlugReading(relay_on=relay, power_w=power_w, current_a=current_a, voltage_v=voltage_v,
                       energy_kwh=energy_kwh)


def types(step: Step) -> list[str]:
    return [e.type for e in step.events]


def event(step: Step, kind: str) -> ChargeEvent:
    return next(e for e in step.events if e.type == kind)


def feed(s: ChargeSession, reading: PlugReading, start: float, end: float, every: float = 10.0) -> list[Step]:
    """The same reading every ``every`` seconds from ``start`` to ``end`` inclusive."""
    steps = []
    t = start
    while t <= end + 1e-9:
        steps.append(s.step(reading, t))
        t += every
    return steps


def charging_session(params: ChargeParams = P, *, at: float = 0.0, power_w: float = 1000.0,
                     energy_kwh: float | None = None) -> ChargeSession:
    s = ChargeSession(params=params)
    s.car_returned(at)
    step = s.step(r(power_w, energy_kwh=energy_kwh), at + 1)
    assert types(step) == ["charge.started"]
    return s


# ---------------------------------------------------------------------------------------------
# Idle, return, waiting for the plug
# ---------------------------------------------------------------------------------------------

def test_a_new_session_is_idle_and_quiet() -> None:
    s = ChargeSession(params=P)
    assert s.state is ChargeState.IDLE
    assert s.step(r(0.0, relay=False), 0.0) == Step()
    assert s.state is ChargeState.IDLE


def test_idle_switches_an_unexpectedly_live_socket_off() -> None:
    s = ChargeSession(params=P)
    assert s.step(r(0.0, relay=True), 0.0) == Step(relay=False)
    assert s.state is ChargeState.IDLE


def test_returned_car_waits_for_the_plug_with_the_relay_on() -> None:
    s = ChargeSession(params=P)
    step = s.car_returned(100.0)
    assert step == Step(relay=True)
    assert (s.state, s.since) == (ChargeState.WAITING, 100.0)
    assert ChargeState.WAITING.wants_relay and ChargeState.CHARGING.wants_relay
    assert not any(st.wants_relay for st in (ChargeState.IDLE, ChargeState.COMPLETE, ChargeState.FAULT,
                                             ChargeState.RELEASED))


def test_waiting_reasserts_the_relay_when_it_reads_off() -> None:
    s = ChargeSession(params=P)
    s.car_returned(0.0)
    assert s.step(r(0.0, relay=False), 1.0) == Step(relay=True)
    assert s.state is ChargeState.WAITING


def test_power_above_the_threshold_starts_charging() -> None:
    s = ChargeSession(params=P)
    s.car_returned(0.0)
    assert s.step(r(100.0), 1.0) == Step()  # exactly the threshold is not above it
    step = s.step(r(850.04), 2.0)
    assert step.events == (ChargeEvent(type="charge.started", data={"power_w": 850.0}),)
    assert step.relay is None
    assert (s.state, s.since, s.session_wh) == (ChargeState.CHARGING, 2.0, 0.0)


def test_vehicle_not_plugged_is_raised_once_after_the_alert_delay() -> None:
    s = ChargeSession(params=P)
    s.car_returned(1000.0)
    before = feed(s, r(0.0), 1010.0, 1290.0)
    assert all(step == Step() for step in before)
    step = s.step(r(0.0), 1300.0)
    assert step.events == (ChargeEvent(type="vehicle.not_plugged", data={"waited_s": 300}),)
    after = feed(s, r(0.0), 1310.0, 5000.0)
    assert all(not step.events for step in after)
    assert s.state is ChargeState.WAITING


def test_vehicle_not_plugged_again_after_the_next_return() -> None:
    s = ChargeSession(params=P)
    s.car_returned(0.0)
    assert types(s.step(r(0.0), 400.0)) == ["vehicle.not_plugged"]
    s.car_released(500.0)
    s.car_returned(1000.0)
    assert types(s.step(r(0.0), 1299.0)) == []
    assert types(s.step(r(0.0), 1300.0)) == ["vehicle.not_plugged"]


def test_no_not_plugged_alert_when_the_car_charges_in_time() -> None:
    s = ChargeSession(params=P)
    s.car_returned(0.0)
    s.step(r(0.0), 100.0)
    assert types(s.step(r(900.0), 200.0)) == ["charge.started"]
    assert all(not step.events for step in feed(s, r(900.0), 210.0, 1000.0))


def test_plug_in_alert_delay_is_configurable() -> None:
    s = ChargeSession(params=ChargeParams(plug_in_alert_s=60.0))
    s.car_returned(0.0)
    assert types(s.step(r(0.0), 59.0)) == []
    assert types(s.step(r(0.0), 60.0)) == ["vehicle.not_plugged"]


# ---------------------------------------------------------------------------------------------
# Charging to complete, energy
# ---------------------------------------------------------------------------------------------

def test_below_standby_for_complete_after_completes_and_switches_off() -> None:
    s = charging_session(at=0.0, power_w=1000.0)  # started at t=1
    feed(s, r(1000.0), 11.0, 3601.0)  # an hour at 1 kW
    first_low = s.step(r(5.0), 3611.0)
    assert first_low == Step() and s.below_since == 3611.0
    steps = feed(s, r(5.0), 3621.0, 3611.0 + 590.0)
    assert all(step == Step() for step in steps)
    assert s.state is ChargeState.CHARGING
    step = s.step(r(5.0), 3611.0 + 600.0)
    assert s.state is ChargeState.COMPLETE
    assert step.relay is False
    (done,) = step.events
    assert done.type == "charge.completed"
    assert done.data["reason"] == "complete"
    assert done.data["duration_s"] == 3611 + 600 - 1
    # 1 kW for 3600 s, the 10 s ramp down to 5 W, then 600 s at 5 W.
    expected = 1000.0 + (1000.0 + 5.0) / 2 * 10 / 3600 + 5.0 * 600 / 3600
    assert done.data["wh"] == pytest.approx(expected, abs=0.1)
    assert s.session_wh == pytest.approx(expected)


def test_completed_energy_comes_from_the_meter_when_it_has_a_counter() -> None:
    s = charging_session(energy_kwh=12.0)
    feed(s, r(1000.0, energy_kwh=12.5), 11.0, 1801.0)  # integrates about 500 Wh
    s.step(r(3.0, energy_kwh=13.25), 1802.0)
    step = s.step(r(3.0, energy_kwh=13.25), 1802.0 + 600.0)
    assert event(step, "charge.completed").data["wh"] == pytest.approx(1250.0)


def test_a_meter_counter_that_went_back_never_gives_negative_energy() -> None:
    s = charging_session(energy_kwh=12.0)
    s.step(r(3.0, energy_kwh=0.5), 100.0)  # the device was reset
    step = s.step(r(3.0, energy_kwh=0.5), 700.0)
    assert event(step, "charge.completed").data["wh"] == 0.0


def test_complete_can_leave_the_relay_on() -> None:
    s = charging_session(ChargeParams(switch_off_when_complete=False))
    s.step(r(2.0), 100.0)
    step = s.step(r(2.0), 700.0)
    assert types(step) == ["charge.completed"]
    assert step.relay is None
    assert s.state is ChargeState.COMPLETE
    assert s.step(r(2.0), 710.0) == Step()  # relay on and nothing drawn: leave it


def test_complete_with_the_relay_left_on_starts_a_new_session_when_the_car_draws_again() -> None:
    s = charging_session(ChargeParams(switch_off_when_complete=False))
    s.step(r(2.0), 100.0)
    s.step(r(2.0), 700.0)
    step = s.step(r(1500.0), 800.0)
    assert types(step) == ["charge.started"]
    assert (s.state, s.session_wh) == (ChargeState.CHARGING, 0.0)


def test_complete_switches_a_live_socket_off_again() -> None:
    s = charging_session()
    s.step(r(2.0), 100.0)
    s.step(r(2.0), 700.0)
    assert s.step(r(2.0, relay=True), 710.0) == Step(relay=False)
    assert s.step(r(0.0, relay=False), 720.0) == Step()


def test_power_between_standby_and_threshold_keeps_charging() -> None:
    s = charging_session()
    s.step(r(5.0), 100.0)
    s.step(r(50.0), 400.0)  # back above standby: the wait starts over
    assert s.below_since is None
    s.step(r(5.0), 500.0)
    assert s.step(r(5.0), 1099.0) == Step()
    assert types(s.step(r(5.0), 1100.0)) == ["charge.completed"]


def test_exactly_standby_is_not_below_it() -> None:
    s = charging_session()
    s.step(r(15.0), 100.0)
    assert s.below_since is None
    assert s.step(r(15.0), 5000.0) == Step()
    assert s.state is ChargeState.CHARGING


def test_lifetime_energy_is_integrated_in_every_state() -> None:
    s = ChargeSession(params=P)
    feed(s, r(1000.0, relay=True), 0.0, 3600.0, every=60.0)  # idle but drawing (before being switched off)
    assert s.lifetime_wh == pytest.approx(1000.0)
    assert s.session_wh == 0.0
    s.step(r(-50.0, relay=True), 3660.0)  # a meter glitch never takes energy back
    assert s.lifetime_wh >= 1000.0


def test_time_going_back_adds_nothing() -> None:
    s = ChargeSession(params=P)
    s.step(r(1000.0), 100.0)
    s.step(r(1000.0), 50.0)
    assert s.lifetime_wh == 0.0


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------

def test_over_current_is_a_fault_that_switches_off() -> None:
    s = charging_session()
    s.step(r(1000.0), 601.0)
    step = s.step(r(2500.0, current_a=11.0), 611.0)
    assert s.state is ChargeState.FAULT
    assert step.relay is False
    assert types(step) == ["charge.completed", "charge.fault"]
    assert event(step, "charge.completed").data["reason"] == "overcurrent"
    assert event(step, "charge.fault").data == {"current_a": 11.0, "kind": "overcurrent", "count": 1,
                                                "resume": "charging", "retry_in_s": 30}


def test_over_current_is_computed_from_power_and_voltage_without_a_current_register() -> None:
    s = ChargeSession(params=P)
    s.car_returned(0.0)
    step = s.step(r(2600.0, voltage_v=230.0), 1.0)  # 11.3 A
    assert types(step) == ["charge.fault"]
    assert event(step, "charge.fault").data["current_a"] == 11.3
    assert event(step, "charge.fault").data["resume"] == "waiting_plug"


def test_at_the_over_current_limit_is_no_fault() -> None:
    s = ChargeSession(params=P)
    s.car_returned(0.0)
    assert types(s.step(r(2300.0, current_a=10.0), 1.0)) == ["charge.started"]


def test_over_current_with_the_relay_reading_off_is_a_stuck_relay_not_an_over_current() -> None:
    s = ChargeSession(params=P)
    step = s.step(r(2600.0, relay=False, current_a=11.3), 1.0)
    assert event(step, "plug.fault").data["kind"] == "stuck_relay"


def test_over_current_retries_with_doubling_back_off_then_gives_up() -> None:
    s = ChargeSession(params=P)
    s.car_returned(0.0)
    t = 10.0
    for count, delay in [(1, 30), (2, 60), (3, 120)]:
        step = s.step(r(2600.0, current_a=11.3), t)
        fault = event(step, "charge.fault")
        assert (fault.data["count"], fault.data["retry_in_s"]) == (count, delay)
        assert (s.state, step.relay) == (ChargeState.FAULT, False)
        # Relay off, nothing drawn: wait out the back-off.
        assert s.step(r(0.0, relay=False), t + 1) == Step()
        assert s.step(r(0.0, relay=False), t + delay - 1) == Step()
        assert s.state is ChargeState.FAULT
        step = s.step(r(0.0, relay=False), t + delay)
        assert step.events == (ChargeEvent(type="charge.retry", data={"count": count}),)
        assert (s.state, step.relay) == (ChargeState.WAITING, True)
        t += delay + 1
    step = s.step(r(2600.0, current_a=11.3), t)
    assert event(step, "charge.fault").data == {"current_a": 11.3, "kind": "overcurrent", "count": 4,
                                                "resume": "waiting_plug", "retry_in_s": None}
    for later in (t + 30, t + 3600, t + 86400):
        assert s.step(r(0.0, relay=False), later) == Step()
        assert s.state is ChargeState.FAULT


def test_retries_are_configurable() -> None:
    s = ChargeSession(params=ChargeParams(retry_after_s=5.0, max_retries=0))
    s.car_returned(0.0)
    step = s.step(r(2600.0, current_a=12.0), 1.0)
    assert event(step, "charge.fault").data["retry_in_s"] is None
    assert s.step(r(0.0, relay=False), 1000.0) == Step()
    assert s.state is ChargeState.FAULT


def test_a_fault_keeps_the_socket_off() -> None:
    s = ChargeSession(params=P)
    s.car_returned(0.0)
    s.step(r(2600.0, current_a=11.3), 1.0)
    assert s.step(r(0.0, relay=True), 2.0) == Step(relay=False)  # the relay did not switch yet


def test_a_lasting_over_current_is_one_fault_not_one_per_poll() -> None:
    # The relay has not switched off yet on the next polls: the same fault, not new ones
    # (which would flood the journal and use up the retries in a few seconds).
    s = ChargeSession(params=P)
    s.car_returned(0.0)
    assert types(s.step(r(2600.0, current_a=11.3), 1.0)) == ["charge.fault"]
    for t in (2.0, 3.0, 4.0, 5.0):
        assert s.step(r(2600.0, current_a=11.3), t) == Step(relay=False)
    assert s.fault_count == 1
    s.step(r(0.0, relay=False), 6.0)
    step = s.step(r(0.0, relay=False), 31.0)
    assert types(step) == ["charge.retry"] and s.state is ChargeState.WAITING


def test_car_return_after_a_fault_starts_afresh() -> None:
    s = ChargeSession(params=ChargeParams(max_retries=0))
    s.car_returned(0.0)
    assert event(s.step(r(2600.0, current_a=11.3), 1.0), "charge.fault").data["retry_in_s"] is None
    s.car_released(10_000.0)
    s.car_returned(10_100.0)
    assert (s.state, s.fault_count) == (ChargeState.WAITING, 0)
    assert event(s.step(r(2600.0, current_a=11.3), 10_200.0), "charge.fault").data["count"] == 1


def test_power_while_the_relay_is_off_is_a_stuck_relay_fault_then_recovers() -> None:
    s = ChargeSession(params=P)
    step = s.step(r(120.0, relay=False), 1.0)
    assert (s.state, step.relay) == (ChargeState.FAULT, False)
    assert step.events == (ChargeEvent(type="plug.fault", data={"power_w": 120.0, "kind": "stuck_relay", "count": 1,
                                                               "resume": "idle", "retry_in_s": None}),)
    assert s.step(r(120.0, relay=False), 2.0) == Step()  # once, not on every poll
    assert s.step(r(300.0, relay=False), 3.0) == Step()
    assert s.state is ChargeState.FAULT
    step = s.step(r(0.0, relay=False), 4.0)
    assert step.events == (ChargeEvent(type="plug.recovered", data={"kind": "stuck_relay"}),)
    assert s.state is ChargeState.IDLE
    assert types(s.step(r(120.0, relay=False), 5.0)) == ["plug.fault"]  # a new fault is reported again


def test_standby_power_with_the_relay_off_is_no_fault() -> None:
    s = ChargeSession(params=P)
    assert s.step(r(15.0, relay=False), 1.0) == Step()
    assert s.state is ChargeState.IDLE


def test_stuck_relay_while_charging_closes_the_session() -> None:
    s = charging_session()
    s.step(r(1000.0), 361.0)
    step = s.step(r(1000.0, relay=False), 371.0)
    assert types(step) == ["charge.completed", "plug.fault"]
    assert event(step, "charge.completed").data["reason"] == "stuck_relay"
    assert event(step, "plug.fault").data["resume"] == "charging"


def test_stuck_relay_cancels_a_pending_over_current_retry() -> None:
    s = ChargeSession(params=P)
    s.car_returned(0.0)
    s.step(r(2600.0, current_a=11.3), 1.0)
    s.step(r(500.0, relay=False), 2.0)
    assert s.fault_kind == "stuck_relay" and s.retry_at is None
    assert s.step(r(0.0, relay=False), 3.0).events[0].type == "plug.recovered"


@pytest.mark.parametrize("leave", ["charger_off", "car_returned", "car_released"])
def test_a_stuck_relay_is_reported_again_after_leaving_the_fault_by_a_command(leave: str) -> None:
    s = ChargeSession(params=P)
    assert types(s.step(r(120.0, relay=False), 1.0)) == ["plug.fault"]
    if leave == "charger_off":
        s.charger(False, 2.0)
    elif leave == "car_returned":
        s.car_returned(2.0)
    else:
        s.car_released(2.0)
    assert s.state is not ChargeState.FAULT and s.fault_kind is None
    step = s.step(r(120.0, relay=False), 3.0)
    assert types(step) == ["plug.fault"] and s.state is ChargeState.FAULT


# ---------------------------------------------------------------------------------------------
# Commands: the maintainer's charger switch, the car leaving
# ---------------------------------------------------------------------------------------------

def test_charger_on_waits_for_a_car_without_nagging() -> None:
    s = ChargeSession(params=P)
    step = s.charger(True, 0.0)
    assert step == Step(relay=True) and s.state is ChargeState.WAITING
    assert s.step(r(0.0), 10_000.0) == Step()  # no vehicle.not_plugged: a maintainer is there
    assert types(s.step(r(800.0), 10_010.0)) == ["charge.started"]


def test_charger_on_clears_a_fault() -> None:
    s = ChargeSession(params=ChargeParams(max_retries=0))
    s.car_returned(0.0)
    s.step(r(2600.0, current_a=11.3), 1.0)
    assert (s.state, s.retry_at) == (ChargeState.FAULT, None)  # no retry left
    step = s.charger(True, 2000.0)
    assert step == Step(relay=True)
    assert (s.state, s.fault_kind, s.fault_count, s.retry_at) == (ChargeState.WAITING, None, 0, None)


def test_charger_on_while_charging_keeps_the_session() -> None:
    s = charging_session()
    s.step(r(1000.0), 361.0)
    assert s.charger(True, 362.0) == Step(relay=True)
    assert s.state is ChargeState.CHARGING
    assert s.step(r(1000.0), 372.0) == Step()  # no second charge.started
    wh = s.session_wh
    assert wh == pytest.approx(1000.0 * 371 / 3600)


def test_charger_off_stops_and_closes_the_session() -> None:
    s = charging_session()
    s.step(r(1000.0), 361.0)
    step = s.charger(False, 400.0)
    assert (s.state, step.relay) == (ChargeState.IDLE, False)
    (done,) = step.events
    assert done.type == "charge.completed"
    assert done.data["reason"] == "switched_off"
    assert done.data["wh"] == pytest.approx(100.0, abs=0.1)
    assert s.step(r(0.0, relay=True), 410.0) == Step(relay=False)  # idle keeps it off


def test_charger_off_without_a_session_has_no_event() -> None:
    s = ChargeSession(params=P)
    s.car_returned(0.0)
    assert s.charger(False, 1.0) == Step(relay=False)


def test_car_released_closes_the_session_and_switches_off() -> None:
    s = charging_session()
    s.step(r(1000.0), 3601.0)
    step = s.car_released(3602.0)
    assert (s.state, step.relay) == (ChargeState.RELEASED, False)
    (done,) = step.events
    assert (done.type, done.data["reason"]) == ("charge.completed", "released")
    assert done.data["wh"] == pytest.approx(1000.0, abs=0.1)


def test_car_released_from_complete_has_no_event() -> None:
    s = charging_session()
    s.step(r(1.0), 10.0)
    s.step(r(1.0), 610.0)
    assert s.state is ChargeState.COMPLETE
    assert s.car_released(700.0) == Step(relay=False)


def test_released_keeps_the_socket_off() -> None:
    s = ChargeSession(params=P)
    s.car_released(0.0)
    assert s.step(r(0.0, relay=True), 1.0) == Step(relay=False)
    assert s.step(r(0.0, relay=False), 2.0) == Step()
    assert s.state is ChargeState.RELEASED


# ---------------------------------------------------------------------------------------------
# A session living through random readings, time and commands
# ---------------------------------------------------------------------------------------------

POWERS = st.one_of(
    st.sampled_from([0.0, 5.0, 14.9, 15.0, 15.1, 50.0, 100.0, 100.1, 800.0, 1800.0, 2600.0]),
    st.floats(min_value=-20.0, max_value=4000.0, allow_nan=False),
)
params_st = st.builds(
    ChargeParams,
    threshold_w=st.sampled_from([50.0, 100.0]),
    standby_w=st.sampled_from([5.0, 15.0]),
    complete_after_s=st.sampled_from([0.0, 30.0, 600.0]),
    switch_off_when_complete=st.booleans(),
    overcurrent_a=st.sampled_from([8.0, 10.0]),
    plug_in_alert_s=st.sampled_from([0.0, 60.0, 300.0]),
    retry_after_s=st.sampled_from([1.0, 30.0]),
    max_retries=st.integers(0, 3),
)


class ChargingMachine(RuleBasedStateMachine):
    """A bay: the session, a relay that usually obeys it, a meter that counts."""

    def __init__(self) -> None:
        super().__init__()
        self.session = ChargeSession(params=P)
        self.now = 0.0
        self.relay = False  # the physical relay
        self.stuck = False  # when set, the relay ignores commands
        self.meter_kwh = 3.0
        self.with_meter = True
        self.prev_lifetime = 0.0
        self.open = False  # a charge.started not yet followed by charge.completed
        self.alerts_since_return = 0
        self.retries_since_reset = 0
        self.fault_at: float | None = None
        self.fault_count = 0

    @initialize(params=params_st, with_meter=st.booleans())
    def setup(self, params: ChargeParams, with_meter: bool) -> None:
        self.session = ChargeSession(params=params)
        self.with_meter = with_meter

    # -- driving the session -------------------------------------------------
    def _apply(self, step: Step) -> None:
        s = self.session
        assert isinstance(s.state, ChargeState)
        for ev in step.events:
            note(ev.type)
            if ev.type == "charge.started":
                assert not self.open, "a second charge.started without a charge.completed"
                self.open = True
            elif ev.type == "charge.completed":
                assert self.open, "charge.completed without a charge.started"
                assert ev.data["wh"] >= 0.0 and ev.data["duration_s"] >= 0
                self.open = False
            elif ev.type == "vehicle.not_plugged":
                self.alerts_since_return += 1
                assert self.alerts_since_return == 1
            elif ev.type in ("charge.fault", "plug.fault"):
                self.fault_at = self.now
                self.fault_count = ev.data["count"]
                if ev.data["retry_in_s"] is not None:
                    assert ev.type == "charge.fault"
                    assert ev.data["count"] <= s.params.max_retries
                    assert ev.data["retry_in_s"] == round(s.params.retry_after_s * 2 ** (ev.data["count"] - 1))
            elif ev.type == "charge.retry":
                self.retries_since_reset += 1
                assert self.retries_since_reset <= s.params.max_retries
                assert self.fault_at is not None
                assert self.now - self.fault_at >= s.params.retry_after_s * 2 ** (self.fault_count - 1) - 1e-6
            else:
                assert ev.type == "plug.recovered", ev.type
        if s.state is ChargeState.FAULT:
            assert step.relay is not True  # relay desired off in FAULT
        if step.relay is not None and not self.stuck:
            self.relay = step.relay

    def _fresh(self) -> None:
        self.alerts_since_return = 0
        self.retries_since_reset = 0

    @rule(power=POWERS, dt=st.sampled_from([0.0, 1.0, 10.0, 60.0, 600.0]),
          lie=st.integers(0, 5).map(lambda n: n == 0), current=st.sampled_from(["none", "measured", "from_voltage"]))
    def reading(self, power: float, dt: float, lie: bool, current: str) -> None:
        """One poll. Nothing flows through an open relay, unless it ``lie``s."""
        self.now += dt
        if not self.relay and not lie:
            power = min(power, 0.0)
        if dt and power > 0:
            self.meter_kwh += power * dt / 3_600_000
        reading = PlugReading(
            relay_on=self.relay,
            power_w=power,
            current_a=power / 230.0 if current == "measured" else None,
            voltage_v=230.0 if current == "from_voltage" else None,
            energy_kwh=round(self.meter_kwh, 3) if self.with_meter else None,
        )
        was_fault = self.session.state is ChargeState.FAULT
        step = self.session.step(reading, self.now)
        if was_fault and self.session.state is ChargeState.FAULT and self.relay:
            assert step.relay is False  # a fault keeps the socket off
        self._apply(step)

    @rule(power=st.sampled_from([0.0, 3.0, 900.0, 1700.0]), dt=st.sampled_from([60.0, 300.0]),
          current=st.sampled_from(["none", "measured"]))
    def ordinary_reading(self, power: float, dt: float, current: str) -> None:
        """A poll of a plug that behaves: a car charging, finishing, or not plugged."""
        self.reading(power, dt, False, current)

    @rule(dt=st.sampled_from([1.0, 30.0, 300.0, 3600.0]))
    def time_passes_quietly(self, dt: float) -> None:
        self.now += dt

    # The service returns a car only to a bay whose car is out (released, or an empty bay
    # for a one-way arrival): never onto a socket that is charging.
    @precondition(lambda self: self.session.state is not ChargeState.CHARGING)
    @rule()
    def car_returned(self) -> None:
        self._fresh()
        self._apply(self.session.car_returned(self.now))
        assert self.session.state is ChargeState.WAITING

    @rule()
    def car_released(self) -> None:
        step = self.session.car_released(self.now)
        self._apply(step)
        assert step.relay is False and self.session.state is ChargeState.RELEASED and not self.open

    @rule(on=st.booleans())
    def charger(self, on: bool) -> None:
        if on:
            self.retries_since_reset = 0
        step = self.session.charger(on, self.now)
        self._apply(step)
        assert step.relay is on
        if not on:
            assert self.session.state is ChargeState.IDLE and not self.open

    @rule(stuck=st.booleans())
    def relay_sticks(self, stuck: bool) -> None:
        self.stuck = stuck

    # -- invariants -------------------------------------------------------------
    @invariant()
    def energy_never_decreases(self) -> None:
        s = self.session
        assert s.lifetime_wh >= self.prev_lifetime
        assert s.session_wh >= 0.0
        assert not math.isnan(s.lifetime_wh)
        self.prev_lifetime = s.lifetime_wh

    @invariant()
    def state_is_a_charge_state(self) -> None:
        assert isinstance(self.session.state, ChargeState)

    @invariant()
    def charging_means_an_open_session(self) -> None:
        assert (self.session.state is ChargeState.CHARGING) == self.open

    @invariant()
    def fault_details_only_in_fault(self) -> None:
        s = self.session
        if s.state is not ChargeState.FAULT:
            assert s.fault_kind is None and s.retry_at is None
        else:
            assert s.fault_kind in ("overcurrent", "stuck_relay")
            if s.retry_at is not None:
                assert s.fault_kind == "overcurrent" and s.fault_count <= s.params.max_retries


ChargingMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestChargingMachine = ChargingMachine.TestCase
