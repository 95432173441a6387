"""The charge session of one bay, fed by plug readings.

Pure and synchronous: :meth:`ChargeSession.step` takes a reading and the
monotonic time and returns what happened (events to journal) and what the
relay should be. The bay controller does the I/O.

States::

    idle ──car returned──▶ waiting_plug ──power > threshold──▶ charging
      ▲                        │ (no power for plug_in_alert: vehicle.not_plugged)
      │                        ▼
      └──relay off── complete ◀──power < standby for complete_after── charging
    any ──over-current / power while relay off──▶ fault ──back-off──▶ waiting_plug
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from station.model import PlugReading


class ChargeState(StrEnum):
    IDLE = "idle"  # relay off, nothing expected
    WAITING = "waiting_plug"  # relay on after a return, waiting for the car to draw power
    CHARGING = "charging"
    COMPLETE = "complete"
    FAULT = "fault"
    RELEASED = "released"  # the car is out on a trip

    @property
    def wants_relay(self) -> bool:
        return self in (ChargeState.WAITING, ChargeState.CHARGING)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargeParams:
    threshold_w: float = 100.0
    standby_w: float = 15.0
    complete_after_s: float = 600.0
    switch_off_when_complete: bool = True
    overcurrent_a: float = 10.0
    plug_in_alert_s: float = 300.0
    retry_after_s: float = 30.0  # first retry after an over-current; doubles
    max_retries: int = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargeEvent:
    type: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    events: tuple[ChargeEvent, ...] = ()
    relay: bool | None = None  # desired relay state, None: leave it


@dataclass(slots=True)
class ChargeSession:
    params: ChargeParams
    state: ChargeState = ChargeState.IDLE
    since: float = 0.0  # monotonic time the state was entered
    session_wh: float = 0.0
    lifetime_wh: float = 0.0  # our own integral, used when the meter has no counter
    meter_kwh_at_start: float | None = None
    below_since: float | None = None
    last_at: float | None = None
    last_power: float = 0.0
    alerted_not_plugged: bool = False
    fault_kind: str | None = None
    fault_count: int = 0
    retry_at: float | None = None
    stuck_wanted: bool | None = None  # a relay stuck against this command

    # -- commands -------------------------------------------------------
    def _enter(self, state: ChargeState, now: float) -> None:
        self.state = state
        self.since = now
        self.below_since = None
        if state is not ChargeState.FAULT:
            # Leaving a fault by any way (recovery, retry or a command) forgets it, so a
            # stuck relay seen again later is reported again.
            self.fault_kind = None
            self.retry_at = None
            self.stuck_wanted = None

    def car_returned(self, now: float) -> Step:
        """A trip ended here: power the socket and expect the car to charge."""
        self._enter(ChargeState.WAITING, now)
        self.alerted_not_plugged = False
        self.fault_count = 0
        return Step(relay=True)

    def car_released(self, now: float) -> Step:
        """The car leaves: the socket must be off before it is unplugged."""
        events = self._close_session(now, reason="released")
        self._enter(ChargeState.RELEASED, now)
        return Step(events=events, relay=False)

    def charger(self, on: bool, now: float) -> Step:
        """A maintainer's switch. On: expect a car; off: stop (closing a session)."""
        if on:
            if self.state is ChargeState.CHARGING:
                return Step(relay=True)  # already on and charging: keep the session
            self.fault_kind = None
            self.fault_count = 0
            self.retry_at = None
            self._enter(ChargeState.WAITING, now)
            self.alerted_not_plugged = True  # a maintainer is there: no nagging
            return Step(relay=True)
        events = self._close_session(now, reason="switched_off")
        self._enter(ChargeState.IDLE, now)
        return Step(events=events, relay=False)

    def relay_stuck(self, wanted: bool, read: bool, now: float) -> Step:
        """The relay reads ``read`` after being commanded ``wanted``: a
        stuck-relay fault, reported once; the command is retried now and then."""
        if self.state is ChargeState.FAULT and self.fault_kind == "stuck_relay":
            self.retry_at = now + 2 * self.params.retry_after_s
            return Step()
        step = self._fault("stuck_relay", now, {"wanted": "on" if wanted else "off", "read": "on" if read else "off"},
                           relay=None)
        self.stuck_wanted = wanted
        self.retry_at = now + 2 * self.params.retry_after_s
        return step

    # -- readings -------------------------------------------------------
    def step(self, reading: PlugReading, now: float) -> Step:
        self._integrate(reading, now)
        current = reading.current_a
        if current is None and reading.voltage_v:
            current = reading.power_w / reading.voltage_v
        if reading.relay_on and current is not None and current > self.params.overcurrent_a:
            if self.state is ChargeState.FAULT and self.fault_kind == "overcurrent":
                return Step(relay=False)  # the same fault, the relay has not opened yet
            return self._fault("overcurrent", now, {"current_a": round(current, 2)}, relay=False)
        if not reading.relay_on and reading.power_w > self.params.standby_w:
            if self.fault_kind != "stuck_relay":
                return self._fault("stuck_relay", now, {"power_w": round(reading.power_w, 1)}, relay=False)
            return Step()
        if self.state is ChargeState.FAULT:
            return self._in_fault(reading, now)

        p = self.params
        if self.state is ChargeState.WAITING:
            if not reading.relay_on:
                return Step(relay=True)
            if reading.power_w > p.threshold_w:
                self._enter(ChargeState.CHARGING, now)
                self.session_wh = 0.0
                self.meter_kwh_at_start = reading.energy_kwh
                return Step(events=(ChargeEvent(type="charge.started", data={"power_w": round(reading.power_w, 1)}),))
            if not self.alerted_not_plugged and now - self.since >= p.plug_in_alert_s:
                self.alerted_not_plugged = True
                return Step(events=(ChargeEvent(type="vehicle.not_plugged", data={"waited_s": round(now - self.since)}),))
            return Step()
        if self.state is ChargeState.CHARGING:
            if reading.power_w < p.standby_w:
                if self.below_since is None:
                    self.below_since = now
                elif now - self.below_since >= p.complete_after_s:
                    events = self._close_session(now, reason="complete", reading=reading)
                    self._enter(ChargeState.COMPLETE, now)
                    return Step(events=events, relay=False if p.switch_off_when_complete else None)
            else:
                self.below_since = None
            return Step()
        if self.state is ChargeState.COMPLETE and reading.relay_on and reading.power_w > p.threshold_w:
            # Switched back on (not by us) and drawing: a new session.
            self._enter(ChargeState.CHARGING, now)
            self.session_wh = 0.0
            self.meter_kwh_at_start = reading.energy_kwh
            return Step(events=(ChargeEvent(type="charge.started", data={"power_w": round(reading.power_w, 1)}),))
        if self.state in (ChargeState.IDLE, ChargeState.RELEASED, ChargeState.COMPLETE) and reading.relay_on:
            if self.state is ChargeState.COMPLETE and not p.switch_off_when_complete:
                return Step()
            return Step(relay=False)
        return Step()

    # -- internals ------------------------------------------------------
    def _integrate(self, reading: PlugReading, now: float) -> None:
        if self.last_at is not None and now > self.last_at:
            dt_h = (now - self.last_at) / 3600.0
            wh = max(0.0, (self.last_power + reading.power_w) / 2.0) * dt_h
            self.lifetime_wh += wh
            if self.state is ChargeState.CHARGING:
                self.session_wh += wh
        self.last_at = now
        self.last_power = reading.power_w

    def _close_session(self, now: float, *, reason: str, reading: PlugReading | None = None) -> tuple[ChargeEvent, ...]:
        if self.state is not ChargeState.CHARGING:
            return ()
        wh = self.session_wh
        if reading is not None and reading.energy_kwh is not None and self.meter_kwh_at_start is not None:
            wh = max(0.0, (reading.energy_kwh - self.meter_kwh_at_start) * 1000.0)
        return (
            ChargeEvent(
                type="charge.completed",
                data={"wh": round(wh, 1), "reason": reason, "duration_s": round(now - self.since)},
            ),
        )

    def _fault(self, kind: str, now: float, data: dict[str, Any], *, relay: bool | None) -> Step:
        events = list(self._close_session(now, reason=kind))
        self.fault_kind = kind
        self.fault_count += 1
        resume = self.state if self.state is not ChargeState.FAULT else ChargeState.WAITING
        self._enter(ChargeState.FAULT, now)
        if kind == "overcurrent" and self.fault_count <= self.params.max_retries:
            self.retry_at = now + self.params.retry_after_s * 2 ** (self.fault_count - 1)
        else:
            self.retry_at = None
        event_type = "charge.fault" if kind == "overcurrent" else "plug.fault"
        events.append(
            ChargeEvent(
                type=event_type,
                data={**data, "kind": kind, "count": self.fault_count, "resume": resume.value,
                      "retry_in_s": None if self.retry_at is None else round(self.retry_at - now)},
            )
        )
        return Step(events=tuple(events), relay=relay)

    def _in_fault(self, reading: PlugReading, now: float) -> Step:
        if self.fault_kind == "stuck_relay":
            wanted = self.stuck_wanted
            if wanted:  # stuck open: recovered once it closes
                recovered = reading.relay_on
            else:  # stuck closed, or power while open: recovered once off and nothing flows
                recovered = not reading.relay_on and reading.power_w <= self.params.standby_w
            if recovered:
                self._enter(ChargeState.WAITING if wanted else ChargeState.IDLE, now)
                return Step(events=(ChargeEvent(type="plug.recovered", data={"kind": "stuck_relay"}),))
            if self.retry_at is not None and now >= self.retry_at:
                self.retry_at = now + 2 * self.params.retry_after_s
                return Step(relay=bool(wanted))
            return Step()
        if self.retry_at is not None and now >= self.retry_at:
            self.retry_at = None
            self.fault_kind = None
            self._enter(ChargeState.WAITING, now)
            self.alerted_not_plugged = False
            return Step(events=(ChargeEvent(type="charge.retry", data={"count": self.fault_count}),), relay=True)
        return Step(relay=False if reading.relay_on else None)
