"""The station service: taps, trips, commands, documents and the journal feed.

Every way of taking or returning a car (a card, a remote unlock, the car's
lock signal, a maintainer's command) goes through the same rules and the same
order: decide from local data, journal durably, then act on devices.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from station import __version__
from station.authorization import BayView, OpenTrip, Policy, Situation, authorize
from station.bay import BayController
from station.charging import ChargeState
from station.credentials import card_ref, check_card, mask_uid, read_credential
from station.documents import check_applicable, parse_time, verify
from station.errors import DocumentRejected, DomainError, IntegrationError
from station.model import Alert, CardPresented, Decision, Member, Mode, Reason, ReservationStatus, StationSnapshot
from station.ports import CardReader
from station.store.roster import RosterStore, apply_roster
from station.store.state import StateStore, TripRow, iso
from station.tariff import Tariff
from station.taps import TapGate
from station.walltime import WallClock

_LOGGER = logging.getLogger(__name__)

BACKLOG_ALERT = 10_000
LARGE_DOCUMENT = 1 << 20  # bytes: above this a roster is applied in a worker process


class Station:
    def __init__(
        self,
        *,
        station_id: str,
        name: str,
        data_dir: Path,
        store: StateStore,
        roster: RosterStore,
        clock: WallClock,
        bays: Sequence[BayController],
        reader: CardReader | None,
        gate: TapGate,
        policy: Policy,
        tariff: Tariff,
        card_key: bytes,
        issuer_keys: dict[str, Any],
        document_keys: dict[str, bytes],
        roster_warning: timedelta = timedelta(hours=24),
        retention: timedelta = timedelta(days=30),
        process_pool: Any = None,
        process_pool_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.station_id = station_id
        self.name = name
        self.data_dir = data_dir
        self.store = store
        self.roster = roster
        self.clock = clock
        self.bays = {b.bay: b for b in bays}
        self.reader = reader
        self.gate = gate
        self.policy = policy
        self.tariff = tariff
        self._card_key = card_key
        self._issuer_keys = issuer_keys
        self._document_keys = document_keys
        self._roster_warning = roster_warning
        self.retention = retention
        self._pool = process_pool
        self._pool_factory = process_pool_factory
        self._reservation_parts: dict[str, Any] | None = None
        self._lock = asyncio.Lock()  # one decision at a time
        self._doc_lock = asyncio.Lock()  # one document apply at a time
        self._listeners_state: list[Callable[[], None]] = []
        self.reader_fault: str | None = None
        self.shared: Any = None  # connections the composition root shares between adapters
        self.api_server: Any = None
        self.last_sync: datetime | None = None
        mode = store.get_meta("mode")
        self.mode = Mode(mode) if mode else Mode.NORMAL
        for bay in self.bays.values():
            bay._on_change = self._changed

    # -- observation -----------------------------------------------------------
    def subscribe(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        return self.store.subscribe(listener)

    def on_state_change(self, listener: Callable[[], None]) -> None:
        self._listeners_state.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners_state):
            try:
                listener()
            except Exception:  # noqa: BLE001
                _LOGGER.exception("state listener failed")

    def _open_trips(self) -> list[TripRow]:
        return self.store.open_trips()

    def alerts(self) -> tuple[Alert, ...]:
        out: list[Alert] = []
        for bay in self.bays.values():
            s = bay.session
            if s.state is ChargeState.WAITING and s.alerted_not_plugged:
                if bay.last is None or bay.last.power_w <= s.params.threshold_w:
                    out.append(Alert(key=f"vehicle_not_plugged_{bay.bay}", title=f"{bay.vehicle or bay.home_vehicle} not plugged in",
                                     message=f"Bay {bay.bay}: the car came back but draws no power. Please plug it in."))
            if not bay.reachable:
                out.append(Alert(key=f"plug_fault_{bay.bay}", title=f"Plug of bay {bay.bay} unreachable",
                                 message=bay.fault_detail or "no answer", severity="error"))
            elif s.state is ChargeState.FAULT:
                out.append(Alert(key=f"charge_fault_{bay.bay}", title=f"Charging fault at bay {bay.bay}",
                                 message=f"{s.fault_kind}: the socket is off", severity="error"))
        if self.reader_fault:
            out.append(Alert(key="reader_fault", title="NFC reader fault", message=self.reader_fault, severity="error"))
        info = self.roster.info
        now = self.clock.now()
        if info is None or info.expires_at is None:
            out.append(Alert(key="roster_missing", title="No roster", message="No member roster has been received yet."))
        elif info.expires_at - now < self._roster_warning:
            expired = info.expires_at <= now
            out.append(Alert(key="roster_expiring", title="Roster expired" if expired else "Roster about to expire",
                             message=f"Roster v{info.version} expires at {iso(info.expires_at)}: cars cannot be released without a fresh one.",
                             severity="error" if expired else "warning"))
        backlog = self.store.last_seq - self.store.acked_seq
        if backlog > BACKLOG_ALERT:
            out.append(Alert(key="journal_backlog", title="Journal not collected",
                             message=f"{backlog} events wait for the central server."))
        if self.gate.locked_until is not None:
            out.append(Alert(key="reader_lockout", title="Card reader locked out",
                             message="Too many unknown cards: the reader is locked for a while."))
        return tuple(out)

    def snapshot(self) -> StationSnapshot:
        open_by_bay = {t.bay: t.trip_id for t in self._open_trips()}
        bays = tuple(b.snapshot(open_by_bay.get(b.bay)) for b in self.bays.values())
        res = self.store.document("reservations")
        alerts = self.alerts()
        if self.mode is Mode.OUT_OF_SERVICE:
            state = "out_of_service"
        elif self.mode is Mode.MAINTENANCE:
            state = "maintenance"
        elif any(a.severity == "error" for a in alerts):
            state = "degraded"
        else:
            state = "ok"
        return StationSnapshot(
            station=self.station_id, name=self.name, version=__version__, mode=self.mode, state=state,
            roster=self.roster.info, reservations_version=res["version"] if res else 0,
            journal_last_seq=self.store.last_seq, journal_acked_seq=self.store.acked_seq,
            clock_trusted=self.clock.trusted, last_sync=self.last_sync,
            unknown_card_rate=self.gate.unknown_rate_per_min(), bays=bays, alerts=alerts,
        )

    # -- the rule -------------------------------------------------------------------
    def _situation(self) -> Situation:
        bays = tuple(BayView(bay=b.bay, home_vehicle=b.home_vehicle, vehicle=b.vehicle) for b in self.bays.values())
        parked = [b.vehicle for b in self.bays.values() if b.vehicle]
        info = self.roster.info
        return Situation(
            station=self.station_id, now=self.clock.now(), clock_trusted=self.clock.trusted, mode=self.mode,
            roster_expires_at=info.expires_at if info else None, bays=bays,
            open_trips=tuple(
                OpenTrip(trip_id=t.trip_id, member_id=t.member_id or "", vehicle=t.vehicle, bay=t.bay,
                         reservation_id=t.reservation_id)
                for t in self._open_trips()
            ),
            vehicle_reservations=tuple(self.store.reservations_for_vehicles(parked)),
        )

    def _decide(self, member: Member | None, **narrow: Any) -> Decision:
        reservations = self.store.reservations_for_member(member.member_id) if member else []
        return authorize(self._situation(), self.policy, member=member, reservations=reservations, **narrow)

    # -- taps -------------------------------------------------------------------------
    async def on_card(self, presented: CardPresented) -> Decision | None:
        """A card was presented to the reader."""
        key = card_ref(self._card_key, presented.uid)
        gate = self.gate.admit(key)
        if gate is Reason.DUPLICATE_TAP:
            _LOGGER.debug("card %s again within the debounce window: ignored", mask_uid(presented.uid))
            return None
        async with self._lock:
            if gate is Reason.RATE_LIMITED:
                decision = Decision(reason=Reason.RATE_LIMITED)
            else:
                decision = self._identify_and_decide(presented)
            return await self._carry_out(decision, source="card")

    def _identify_and_decide(self, presented: CardPresented) -> Decision:
        credential = read_credential(presented, card_key=self._card_key, issuer_keys=self._issuer_keys)
        card = self.roster.card(credential.uid_ref)
        if card is None:
            reason = credential.error or Reason.UNKNOWN_CARD
            return Decision(reason=reason, detail=credential.detail if credential.error else "")
        refusal = check_card(credential, card.kind, card.serial, roster_member_id=card.member_id)
        if refusal is not None:
            return Decision(reason=refusal, member_id=card.member_id, detail=credential.detail)
        member = self.roster.member(card.member_id)
        return self._decide(member)

    async def _carry_out(self, decision: Decision, *, source: str, request_id: str | None = None,
                         extra: dict[str, Any] | None = None) -> Decision:
        """Journal the decision, then act. Caller holds ``self._lock``."""
        data = {"decision": "allowed" if decision.allowed else "refused", "reason": decision.reason.value,
                "source": source, **({"detail": decision.detail} if decision.detail else {}), **(extra or {})}
        if request_id is not None:
            data["request_id"] = request_id
        if decision.releases:
            decision = await self._release(decision, data)
        elif decision.reason is Reason.TRIP_ENDED:
            decision = await self._end_trip(decision, data)
        else:
            if decision.reason in (Reason.UNKNOWN_CARD, Reason.INVALID_CREDENTIAL, Reason.SIGNED_CARD_REQUIRED,
                                   Reason.CARD_REVOKED) and source == "card":
                if self.gate.record_refusal():
                    data["lockout"] = True
            with self.store.transaction() as tx:
                tx.append("card.tapped" if source == "card" else "unlock.requested", member_id=decision.member_id,
                          reservation_id=decision.reservation_id, vehicle=decision.vehicle, data=data)
        if source == "card" and self.reader is not None:
            try:
                await self.reader.feedback(decision.allowed)
            except IntegrationError as err:
                _LOGGER.debug("reader feedback failed: %s", err)
        self._changed()
        return decision

    async def _release(self, decision: Decision, data: dict[str, Any]) -> Decision:
        assert decision.bay is not None and decision.vehicle is not None
        bay = self.bays[decision.bay]
        trip_id = str(uuid.uuid4())
        decision = replace(decision, trip_id=trip_id)
        res = self.store.reservation(decision.reservation_id) if decision.reservation_id else None
        one_way = res is not None and res.one_way
        end_station = res.dropoff if res is not None else self.station_id
        step = bay.session.car_released(self.clock.monotonic())
        # 1. Journal first, durably: the trip exists before anything moves.
        with self.store.transaction() as tx:
            tx.append("card.tapped" if data["source"] == "card" else "unlock.requested", member_id=decision.member_id,
                      reservation_id=decision.reservation_id, vehicle=decision.vehicle, bay=bay.bay, trip_id=trip_id,
                      data=data)
            bay.journal_events(tx, step.events)
            event = tx.append(
                "trip.started", bay=bay.bay, vehicle=decision.vehicle, member_id=decision.member_id, trip_id=trip_id,
                reservation_id=decision.reservation_id,
                data={"kind": "one_way" if one_way else "round_trip", "half": "departure" if one_way else "whole",
                      "start_station": self.station_id, "end_station": end_station, "reason": decision.reason.value,
                      "source": data["source"]},
            )
            tx.open_trip(event, kind="one_way" if one_way else "round_trip", half="departure" if one_way else "whole",
                         start_station=self.station_id, end_station=end_station)
            if one_way:
                tx.execute("UPDATE trips SET status='departed' WHERE trip_id=?", (trip_id,))
            bay.vehicle = None
            bay.persist(tx)
        # 2. Socket off (never unplug under load), read back.
        try:
            await bay.switch(False)
        except IntegrationError as err:
            bay.switch_failed(err)
            loaded = bay.last is None or bay.last.power_w > bay.session.params.standby_w or not bay.reachable
            if loaded:
                return self._cancel(decision, bay, f"plug could not be switched off: {err}")
            _LOGGER.warning("bay %s: plug off failed but no load was drawn; releasing", bay.bay)
        # 3. Unlock the car.
        try:
            await bay.release_actuator.release()
        except IntegrationError as err:
            return self._cancel(decision, bay, f"release actuator failed: {err}")
        _LOGGER.info("released %s at bay %s (%s)", decision.vehicle, bay.bay, decision.reason.value)
        return decision

    def _cancel(self, decision: Decision, bay: BayController, why: str) -> Decision:
        _LOGGER.warning("trip %s cancelled: %s", decision.trip_id, why)
        bay.vehicle = decision.vehicle
        if bay.session.state is not ChargeState.FAULT:
            bay.session.charger(False, self.clock.monotonic())
        with self.store.transaction() as tx:
            event = tx.append("trip.cancelled", bay=bay.bay, vehicle=decision.vehicle, member_id=decision.member_id,
                              trip_id=decision.trip_id, reservation_id=decision.reservation_id,
                              data={"reason": Reason.BAY_FAULT.value, "detail": why[:300]})
            tx.execute("UPDATE trips SET status='cancelled', ended_seq=?, ended_at=? WHERE trip_id=?",
                       (event["seq"], event["at"], decision.trip_id))
            bay.persist(tx)
        return replace(decision, reason=Reason.BAY_FAULT, detail=why)

    def _duration(self, trip: TripRow) -> tuple[float | None, str]:
        if trip.started_mono is not None and trip.started_boot == self.store.boot_id:
            return max(0.0, self.clock.monotonic() - trip.started_mono), "monotonic"
        if trip.started_at is not None:
            source = "wall" if (trip.started_trusted and self.clock.trusted) else "wall_untrusted"
            return max(0.0, (self.clock.now() - trip.started_at).total_seconds()), source
        return None, "unknown"

    async def _end_trip(self, decision: Decision, data: dict[str, Any]) -> Decision:
        assert decision.bay is not None and decision.vehicle is not None
        bay = self.bays[decision.bay]
        trip = next((t for t in self._open_trips() if t.trip_id == decision.trip_id), None)
        arrival = trip is None
        if arrival:
            res = self.store.reservation(decision.reservation_id) if decision.reservation_id else None
            trip_id = str(uuid.uuid4())
            duration, source, price = None, "unknown", None
            trip_data = {"kind": "one_way", "half": "arrival", "start_station": res.pickup if res else None,
                         "end_station": self.station_id, "duration_s": None, "price_cents": None,
                         "currency": self.tariff.currency, "duration_source": source}
        else:
            assert trip is not None
            trip_id = trip.trip_id
            duration, source = self._duration(trip)
            price = None if duration is None else self.tariff.price_cents(duration)
            trip_data = {"kind": trip.kind, "half": trip.half, "start_station": trip.start_station,
                         "end_station": self.station_id, "duration_s": None if duration is None else round(duration, 3),
                         "price_cents": price, "currency": self.tariff.currency, "duration_source": source}
        trip_data["source"] = data["source"]
        decision = replace(decision, trip_id=trip_id)
        bay.vehicle = decision.vehicle
        step = bay.session.car_returned(self.clock.monotonic())
        with self.store.transaction() as tx:
            tx.append("card.tapped" if data["source"] == "card" else
                      ("vehicle.locked" if data["source"] == "lock" else "unlock.requested"),
                      member_id=decision.member_id, reservation_id=decision.reservation_id, vehicle=decision.vehicle,
                      bay=bay.bay, trip_id=trip_id, data=data)
            event = tx.append("trip.ended", bay=bay.bay, vehicle=decision.vehicle, member_id=decision.member_id,
                              trip_id=trip_id, reservation_id=decision.reservation_id, data=trip_data)
            if arrival:
                tx.record_arrival(event, start_station=trip_data["start_station"], end_station=self.station_id)
            else:
                tx.close_trip(trip_id, event, status="ended", duration_s=duration, price_cents=price)
            bay.persist(tx)
        _LOGGER.info("trip %s ended at bay %s: %s s, %s cents", trip_id[:8], bay.bay,
                     None if duration is None else round(duration), price)
        try:
            await bay.switch(bool(step.relay))
        except IntegrationError as err:
            bay.switch_failed(err)
        return decision

    # -- other ways in ------------------------------------------------------------------
    async def vehicle_locked(self, vehicle: str, *, source: str) -> Decision | None:
        async with self._lock:
            trip = next((t for t in self._open_trips() if t.vehicle == vehicle), None)
            if trip is None:
                return None
            decision = Decision(reason=Reason.TRIP_ENDED, member_id=trip.member_id, reservation_id=trip.reservation_id,
                                bay=trip.bay, vehicle=vehicle, trip_id=trip.trip_id)
            if self.bays[trip.bay].vehicle not in (None, vehicle):
                free = next((b for b in self.bays.values() if b.vehicle is None), None)
                if free is None:
                    return None
                decision = replace(decision, bay=free.bay)
            return await self._carry_out(decision, source="lock", extra={"signal": source})

    async def remote_unlock(self, *, request_id: str, vehicle: str | None, reservation_id: str | None = None,
                            member_id: str | None = None) -> Decision:
        if not request_id or len(request_id) > 128:
            raise DomainError("request_id must be 1 to 128 characters")
        if reservation_id is None and member_id is None:
            raise DomainError("reservation_id or member_id is required")
        async with self._lock:
            previous = self.store.unlock_answer(request_id)
            if previous is not None:
                return _decision_from(previous)
            res = self.store.reservation(reservation_id) if reservation_id else None
            if reservation_id and res is None:
                decision = Decision(reason=Reason.NO_RESERVATION, member_id=member_id, detail="unknown reservation")
            else:
                mid = res.member_id if res is not None else member_id
                if res is not None and member_id is not None and member_id != res.member_id:
                    decision = Decision(reason=Reason.NO_RESERVATION, member_id=member_id,
                                        detail="reservation belongs to another member")
                else:
                    member = self.roster.member(mid) if mid else None
                    decision = self._decide(member, only_reservation=reservation_id, only_vehicle=vehicle,
                                            end_open_trip=False)
            decision = await self._carry_out(decision, source="remote", request_id=request_id)
            with self.store.transaction() as tx:
                tx.execute("INSERT OR IGNORE INTO unlock_requests (request_id, decision) VALUES (?, ?)",
                           (request_id, _decision_json(decision)))
            return decision

    async def maintenance_release(self, bay: str, *, by: str) -> Decision:
        if bay not in self.bays:
            raise DomainError(f"unknown bay {bay!r}")
        async with self._lock:
            ctl = self.bays[bay]
            if self.mode is not Mode.MAINTENANCE:
                decision = Decision(reason=Reason.OUT_OF_SERVICE if self.mode is Mode.OUT_OF_SERVICE else Reason.NO_RESERVATION,
                                    bay=bay, vehicle=ctl.vehicle, detail="maintenance release needs maintenance mode")
                with self.store.transaction() as tx:
                    tx.append("maintenance.release", bay=bay, vehicle=ctl.vehicle,
                              data={"decision": "refused", "by": by, "reason": "not_in_maintenance_mode"})
                return decision
            with self.store.transaction() as tx:
                tx.append("maintenance.release", bay=bay, vehicle=ctl.vehicle, data={"decision": "allowed", "by": by})
            try:
                await ctl.switch(False)
            except IntegrationError as err:
                _LOGGER.warning("maintenance release: plug off failed: %s", err)
            try:
                await ctl.release_actuator.release()
            except IntegrationError as err:
                with self.store.transaction() as tx:
                    tx.append("release.failed", bay=bay, vehicle=ctl.vehicle, data={"error": str(err)[:300], "by": by})
                return Decision(reason=Reason.BAY_FAULT, bay=bay, detail=str(err))
            return Decision(reason=Reason.WALK_UP, bay=bay, vehicle=ctl.vehicle, detail=f"maintenance release by {by}")

    async def set_charger(self, bay: str, on: bool, *, by: str) -> None:
        if bay not in self.bays:
            raise DomainError(f"unknown bay {bay!r}")
        ctl = self.bays[bay]
        step = ctl.session.charger(on, self.clock.monotonic())
        with self.store.transaction() as tx:
            tx.append("charger.switched", bay=bay, vehicle=ctl.vehicle, data={"on": on, "by": by})
            ctl.journal_events(tx, step.events)
            ctl.persist(tx)
        try:
            await ctl.switch(on)
        except IntegrationError as err:
            ctl.switch_failed(err)
        self._changed()

    async def set_mode(self, mode: Mode, *, by: str) -> None:
        if mode is self.mode:
            return
        with self.store.transaction() as tx:
            tx.append("mode.changed", data={"from": self.mode.value, "to": mode.value, "by": by})
            tx.set_meta("mode", mode.value)
        self.mode = mode
        self._changed()

    async def sync_now(self) -> None:
        """Housekeeping a maintainer can trigger: prune acknowledged events,
        re-read the roster's metadata, republish state."""
        pruned = self.store.prune(self.retention)
        self.roster.refresh()
        _LOGGER.info("sync requested: %d acknowledged events pruned", pruned)
        self._changed()

    # -- readers and faults ---------------------------------------------------------------
    def reader_failed(self, err: BaseException) -> None:
        detail = str(err)[:300] or type(err).__name__
        if self.reader_fault is None:
            with self.store.transaction() as tx:
                tx.append("reader.fault", data={"error": detail})
        self.reader_fault = detail
        self._changed()

    def reader_ok(self) -> None:
        if self.reader_fault is not None:
            self.reader_fault = None
            with self.store.transaction() as tx:
                tx.append("reader.recovered", data={})
            self._changed()

    async def run_reader(self) -> None:
        if self.reader is None:
            await asyncio.Event().wait()
            return

        async def on_card(presented: CardPresented) -> None:
            self.reader_ok()
            await self.on_card(presented)

        try:
            await self.reader.run(on_card)
        except IntegrationError as err:
            self.reader_failed(err)
            raise

    # -- sync API side ------------------------------------------------------------------------
    def trust_clock(self, central_date: Any) -> None:
        if isinstance(central_date, datetime):
            self.clock.trust_central(central_date)
            self.last_sync = self.clock.now()

    async def journal_page(self, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        if after < 0 or limit <= 0:
            raise DomainError("after must be >= 0 and limit > 0")
        self.last_sync = self.clock.now()
        last = self.store.last_seq
        return await asyncio.to_thread(self.store.feed_after, after, min(limit, 10_000)), last

    async def acknowledge(self, up_to: int) -> int:
        acked = self.store.acknowledge(up_to)
        self.last_sync = self.clock.now()
        self._changed()
        return acked

    async def apply_document(self, body: bytes, *, expected_type: str | None = None) -> dict[str, Any]:
        async with self._doc_lock:
            now = self.clock.now()
            if expected_type == "reservations":
                summary = await asyncio.to_thread(self._apply_reservations, body, now)
            elif expected_type == "roster":
                summary = await self._apply_roster(body, now)
            else:
                doc, head = verify(body, self._document_keys)
                summary = (await asyncio.to_thread(self._apply_reservations, body, now) if head.type == "reservations"
                           else await self._apply_roster(body, now))
            self.last_sync = self.clock.now()
            self._changed()
            return summary

    async def _apply_roster(self, body: bytes, now: datetime) -> dict[str, Any]:
        kwargs = {"keys": self._document_keys, "station_id": self.station_id, "now": now.isoformat()}
        if self._pool is None and self._pool_factory is not None and len(body) > LARGE_DOCUMENT:
            self._pool = self._pool_factory()
        if self._pool is not None and len(body) > LARGE_DOCUMENT:
            loop = asyncio.get_running_loop()
            # The part goes to the worker through a file, not a pipe: no pickled copy
            # of 8 MB held in this process while it is sent.
            incoming = self.data_dir / f"incoming-{uuid.uuid4().hex}.part"
            await asyncio.to_thread(incoming.write_bytes, body)
            try:
                summary = await loop.run_in_executor(self._pool, _apply_roster_file, str(self.data_dir), str(incoming),
                                                     kwargs)
            finally:
                incoming.unlink(missing_ok=True)
        else:
            summary = await asyncio.to_thread(apply_roster, str(self.data_dir), body, **kwargs)
        if summary.get("parts") == 1:
            summary["part"] = summary["parts"] = None  # a whole document, not a part
        if summary.get("swapped"):
            self.roster.reopen()
            if self._pool is not None and self._pool_factory is not None:
                # The worker's memory (100 MB at 10^6 members) goes back to the system
                # now; a new worker starts with the next large roster.
                self._pool.shutdown(wait=False)
                self._pool = None
            _return_freed_memory()
        elif summary.get("applied"):
            self.roster.refresh()
        if summary.get("applied"):
            info = self.roster.info
            with self.store.transaction() as tx:
                tx.append("roster.applied", data={"version": summary["version"], "kind": summary["kind"],
                                                  "size": info.size if info else 0,
                                                  "expires_at": iso(info.expires_at) if info else None})
        return summary

    def _apply_reservations(self, body: bytes, now: datetime) -> dict[str, Any]:
        doc, head = verify(body, self._document_keys)
        check_applicable(head, expected_type="reservations", station_id=self.station_id, now=now)
        current = self.store.document("reservations")
        current_version = current["version"] if current else 0
        summary: dict[str, Any] = {"type": "reservations", "kind": head.kind, "version": head.version,
                                   "part": head.part if head.parts > 1 else None,
                                   "parts": head.parts if head.parts > 1 else None, "applied": False}
        if head.kind == "delta" and head.base_version != current_version:
            raise DocumentRejected("base_mismatch", f"delta on version {head.base_version}, this station has {current_version}",
                                   conflict=True)
        if head.kind == "full" and head.version < current_version:
            raise DocumentRejected("lower_version", f"version {head.version} is lower than the current {current_version}")
        if head.kind == "full" and head.version == current_version:
            summary["detail"] = "already at this version"
            return summary
        rows = _reservation_rows(doc.get("reservations", []))
        removed = doc.get("removed", [])
        if not isinstance(removed, list) or not all(isinstance(r, str) for r in removed):
            raise DocumentRejected("invalid_payload", "removed must be a list of reservation ids")
        if head.parts > 1:
            # Parts are staged in memory (a station's reservations are small) and
            # applied together when the last one arrives; another version restarts.
            staged = self._reservation_parts
            if staged is None or (staged["version"], staged["parts"]) != (head.version, head.parts):
                staged = self._reservation_parts = {"version": head.version, "parts": head.parts, "rows": {}}
            staged["rows"][head.part] = rows
            summary["received"] = len(staged["rows"])
            if len(staged["rows"]) < head.parts:
                return summary
            self._reservation_parts = None
            rows = [row for part in sorted(staged["rows"]) for row in staged["rows"][part]]
            ids = [row[0] for row in rows]
            if len(set(ids)) != len(ids):
                raise DocumentRejected("duplicate_reservation", "a reservation is listed in two parts")
        with self.store.transaction() as tx:
            if head.kind == "full":
                tx.execute("DELETE FROM reservations")
            else:
                for rid in removed:
                    tx.execute("DELETE FROM reservations WHERE reservation_id=?", (rid,))
            for row in rows:
                tx.execute('INSERT OR REPLACE INTO reservations (reservation_id, member_id, vehicle, start, "end", pickup,'
                           " dropoff, status) VALUES (?,?,?,?,?,?,?,?)", row)
            size = tx.execute("SELECT COUNT(*) FROM reservations").fetchone()[0]
            tx.execute(
                "INSERT OR REPLACE INTO documents (type, version, issued_at, expires_at, applied_at, size, digest)"
                " VALUES ('reservations', ?, ?, ?, ?, ?, NULL)",
                (head.version, iso(head.issued_at), iso(head.expires_at), iso(now), size),
            )
            tx.append("reservations.applied", data={"version": head.version, "kind": head.kind, "size": size})
        summary.update(applied=True, size=size)
        return summary


def _return_freed_memory() -> None:
    """Hand the large parts' freed buffers back to the system (glibc keeps them)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _apply_roster_file(data_dir: str, path: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    with open(path, "rb") as fh:
        body = fh.read()
    return apply_roster(data_dir, body, **kwargs)


def _reservation_rows(items: Any) -> list[tuple[str, ...]]:
    if not isinstance(items, list):
        raise DocumentRejected("invalid_payload", "reservations must be a list")
    rows = []
    seen: set[str] = set()
    for i, r in enumerate(items):
        if not isinstance(r, dict):
            raise DocumentRejected("invalid_payload", f"reservations[{i}] must be an object")
        values = []
        for field in ("reservation_id", "member_id", "vehicle", "pickup", "dropoff"):
            v = r.get(field)
            if not isinstance(v, str) or not v or len(v) > 128:
                raise DocumentRejected("invalid_payload", f"reservations[{i}].{field} must be a non-empty string")
            values.append(v)
        start = parse_time(r.get("start"), f"reservations[{i}].start")
        end = parse_time(r.get("end"), f"reservations[{i}].end")
        if end <= start:
            raise DocumentRejected("invalid_payload", f"reservations[{i}]: end must be after start")
        status = r.get("status", "confirmed")
        if status not in {s.value for s in ReservationStatus}:
            raise DocumentRejected("invalid_payload", f"reservations[{i}].status must be confirmed or cancelled")
        if values[0] in seen:
            raise DocumentRejected("duplicate_reservation", f"reservation {values[0]} is listed twice")
        seen.add(values[0])
        rid, mid, vehicle, pickup, dropoff = values
        rows.append((rid, mid, vehicle, iso(start), iso(end), pickup, dropoff, status))
    return rows  # type: ignore[return-value]


def _decision_json(decision: Decision) -> str:
    return json.dumps({"reason": decision.reason.value, "member_id": decision.member_id,
                       "reservation_id": decision.reservation_id, "bay": decision.bay, "vehicle": decision.vehicle,
                       "trip_id": decision.trip_id, "detail": decision.detail})


def _decision_from(data: dict[str, Any]) -> Decision:
    return Decision(reason=Reason(data["reason"]), member_id=data.get("member_id"),
                    reservation_id=data.get("reservation_id"), bay=data.get("bay"), vehicle=data.get("vehicle"),
                    trip_id=data.get("trip_id"), detail=data.get("detail") or "")


def decision_dict(decision: Decision) -> dict[str, Any]:
    return {"allowed": decision.allowed, "reason": decision.reason.value, "member_id": decision.member_id,
            "reservation_id": decision.reservation_id, "bay": decision.bay, "vehicle": decision.vehicle,
            "trip_id": decision.trip_id, "detail": decision.detail}


