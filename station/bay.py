"""One bay: its plug, its release actuator and its charge session.

The controller polls the plug, feeds the readings to the pure
:class:`~station.charging.ChargeSession`, journals what happened and drives
the relay. An unreachable plug is a fault (journaled once, alerted) retried
with back-off capped at a few seconds, so the plug is back under control soon
after the device returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from station.charging import ChargeEvent, ChargeSession, ChargeState, Step
from station.clock import Clock
from station.errors import IntegrationError, PermanentIntegrationError, RelayMismatch
from station.model import BaySnapshot, PlugReading
from station.ports import Plug, ReleaseActuator
from station.store.state import StateStore

_LOGGER = logging.getLogger(__name__)

MAX_RETRY_S = 5.0
PERSIST_EVERY_S = 300.0


class BayController:
    def __init__(self, *, bay: str, home_vehicle: str, plug: Plug, release: ReleaseActuator, session: ChargeSession,
                 store: StateStore, clock: Clock, poll_interval: float, vehicle: str | None,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.bay = bay
        self.home_vehicle = home_vehicle
        self.plug = plug
        self.release_actuator = release
        self.session = session
        self.store = store
        self.clock = clock
        self.poll_interval = poll_interval
        self.vehicle = vehicle
        self.reachable = True
        self.fault_detail: str | None = None
        self.relay_on: bool | None = None
        self.last: PlugReading | None = None
        self._on_change = on_change
        self._persisted_at = 0.0
        self.meter_kwh: float | None = None

    # -- snapshot -----------------------------------------------------------
    @property
    def energy_kwh(self) -> float | None:
        if self.last is None:
            return None  # unknown until the plug answered once: unavailable, never 0
        if self.meter_kwh is not None:
            return round(self.meter_kwh, 3)
        return round(self.session.lifetime_wh / 1000.0, 3)

    def snapshot(self, open_trip_id: str | None) -> BaySnapshot:
        state = self.session.state.value
        if not self.reachable:
            state = ChargeState.FAULT.value
        return BaySnapshot(
            bay=self.bay, home_vehicle=self.home_vehicle, vehicle=self.vehicle, state=state,
            relay_on=self.relay_on if self.reachable else None,
            power_w=None if (self.last is None or not self.reachable) else round(self.last.power_w, 1),
            energy_kwh=self.energy_kwh, plug_reachable=self.reachable, open_trip_id=open_trip_id,
        )

    # -- journal helpers ----------------------------------------------------
    def persist(self, tx: Any) -> None:
        tx.set_bay(self.bay, vehicle=self.vehicle, charge_state=self.session.state.value,
                   lifetime_wh=self.session.lifetime_wh)
        self._persisted_at = self.clock.monotonic()

    def journal_events(self, tx: Any, events: tuple[ChargeEvent, ...]) -> None:
        for ev in events:
            event = tx.append(ev.type, bay=self.bay, vehicle=self.vehicle or self.home_vehicle, data=ev.data)
            if ev.type == "charge.started":
                tx.start_charge(event)
            elif ev.type == "charge.completed":
                tx.end_charge(self.bay, event, wh=ev.data.get("wh", 0.0), status=ev.data.get("reason", "complete"))
            elif ev.type == "charge.fault":
                tx.end_charge(self.bay, event, wh=0.0, status="fault")

    def record(self, step: Step) -> None:
        """Journal a step's events and the bay's new state in one transaction."""
        if step.events:
            with self.store.transaction() as tx:
                self.journal_events(tx, step.events)
                self.persist(tx)
            self._on_change()

    # -- relay ----------------------------------------------------------------
    async def switch(self, on: bool) -> bool:
        """Drive the relay; raises IntegrationError if the plug cannot."""
        state = await self.plug.switch(on)
        self.relay_on = state
        if state != on:
            raise RelayMismatch(f"bay {self.bay}: relay reads {'on' if state else 'off'} after switching "
                                f"{'on' if on else 'off'}", wanted=on, read=state)
        return state

    def switch_failed(self, err: IntegrationError) -> None:
        """A switch that did not take: a stuck relay (the plug answered) or a lost plug."""
        if isinstance(err, RelayMismatch):
            self.relay_on = err.read
            self.record(self.session.relay_stuck(err.wanted, err.read, self.clock.monotonic()))
            self._on_change()
        else:
            self._lost(err)

    async def apply(self, step: Step) -> None:
        self.record(step)
        if step.relay is not None and step.relay != self.relay_on:
            try:
                await self.switch(step.relay)
            except IntegrationError as err:
                _LOGGER.debug("bay %s: cannot switch relay %s: %s", self.bay, "on" if step.relay else "off", err)
                self.switch_failed(err)
        self._on_change()

    # -- polling ----------------------------------------------------------------
    def _lost(self, err: BaseException) -> None:
        if self.reachable:
            self.reachable = False
            self.fault_detail = str(err)
            kind = "misconfigured" if isinstance(err, PermanentIntegrationError) else "unreachable"
            with self.store.transaction() as tx:
                tx.append("plug.fault", bay=self.bay, vehicle=self.vehicle,
                          data={"kind": kind, "error": str(err)[:300]})
            self._on_change()

    async def _regained(self) -> None:
        """The plug answers again: drive it first; only then is it recovered.
        Raises IntegrationError (other than a stuck relay) if it cannot be driven."""
        stuck: RelayMismatch | None = None
        try:
            await self.drive_expected()
        except RelayMismatch as err:
            stuck = err  # reachable, but its relay does not obey: a fault of its own
        self.reachable = True
        self.fault_detail = None
        with self.store.transaction() as tx:
            tx.append("plug.recovered", bay=self.bay, vehicle=self.vehicle, data={"kind": "reachable"})
        if stuck is not None:
            self.switch_failed(stuck)
        self._on_change()

    async def drive_expected(self) -> None:
        """Drive the relay to the state the journal implies."""
        want = self.session.state.wants_relay or (
            self.session.state is ChargeState.COMPLETE and not self.session.params.switch_off_when_complete
        )
        await self.switch(want)

    async def run(self) -> None:
        """Poll forever; never raises for a device problem."""
        retry = 1.0
        try:
            await self.drive_expected()
        except IntegrationError as err:
            self.switch_failed(err)
        while True:
            try:
                reading = await self.plug.read()
            except IntegrationError as err:
                self._lost(err)
                cap = 60.0 if isinstance(err, PermanentIntegrationError) else MAX_RETRY_S
                await self.clock.sleep(retry)
                retry = min(retry * 2, cap)
                continue
            retry = 1.0
            self.last = reading
            self.relay_on = reading.relay_on
            if reading.energy_kwh is not None:
                self.meter_kwh = reading.energy_kwh
            if not self.reachable:
                try:
                    await self._regained()
                except IntegrationError as err:
                    self._lost(err)  # still unusable: already journaled once, back off
                    await self.clock.sleep(retry)
                    retry = min(retry * 2, MAX_RETRY_S)
                    continue
            step = self.session.step(reading, self.clock.monotonic())
            await self.apply(step)
            if self.clock.monotonic() - self._persisted_at > PERSIST_EVERY_S:
                with self.store.transaction() as tx:
                    self.persist(tx)
            await self.clock.sleep(self.poll_interval)
