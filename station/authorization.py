"""Offline authorization: may this member take a car here, now?

Pure: everything the rule needs is passed in, the answer is a
:class:`~station.model.Decision` with a reason code. Ending an open trip is
never refused (the car is back, whatever the roster says).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from station.model import Decision, Member, MemberStatus, Mode, Reason, Reservation, ReservationStatus

ARRIVAL_SLACK = timedelta(hours=24)  # a one-way car may arrive this late and still end its trip


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    early_grace: timedelta = timedelta(minutes=15)
    late_grace: timedelta = timedelta(minutes=15)
    walk_up: bool = True
    walk_up_horizon: timedelta = timedelta(minutes=60)


@dataclass(frozen=True, slots=True, kw_only=True)
class BayView:
    bay: str
    home_vehicle: str
    vehicle: str | None  # parked here now; None while out


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenTrip:
    trip_id: str
    member_id: str
    vehicle: str
    bay: str
    reservation_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Situation:
    """The station as the rule sees it at one instant."""

    station: str
    now: datetime
    clock_trusted: bool
    mode: Mode
    roster_expires_at: datetime | None  # None: no roster applied yet
    bays: tuple[BayView, ...]
    open_trips: tuple[OpenTrip, ...] = ()
    # Every confirmed reservation of the cars parked here (to protect them from walk-ups).
    vehicle_reservations: tuple[Reservation, ...] = field(default_factory=tuple)


def _covers(res: Reservation, now: datetime, policy: Policy) -> bool:
    return res.start - policy.early_grace <= now <= res.end + policy.late_grace


def _parked(situation: Situation, vehicle: str) -> BayView | None:
    return next((b for b in situation.bays if b.vehicle == vehicle), None)


def _reserved_soon(situation: Situation, vehicle: str, policy: Policy) -> bool:
    horizon_end = situation.now + policy.walk_up_horizon
    for res in situation.vehicle_reservations:
        if res.vehicle != vehicle or res.status is not ReservationStatus.CONFIRMED:
            continue
        if res.start - policy.early_grace <= horizon_end and res.end + policy.late_grace >= situation.now:
            return True
    return False


def authorize(
    situation: Situation,
    policy: Policy,
    *,
    member: Member | None,
    reservations: Sequence[Reservation] = (),
    only_reservation: str | None = None,
    only_vehicle: str | None = None,
    end_open_trip: bool = True,
) -> Decision:
    """Decide for a member already identified (``member`` None: unknown).

    ``reservations`` are the member's reservations; ``only_reservation`` and
    ``only_vehicle`` narrow the decision for a remote unlock request, which
    passes ``end_open_trip=False``: an unlock request is not the car coming
    back (a retried or double-pressed unlock must not end the trip of a car
    that is still out).
    """
    if member is None:
        return Decision(reason=Reason.UNKNOWN_CARD)
    mid = member.member_id

    # 1. An open trip of this member ends here, whatever else is true.
    for trip in situation.open_trips:
        if (
            end_open_trip
            and trip.member_id == mid
            and (only_vehicle is None or trip.vehicle == only_vehicle)
            and (only_reservation is None or trip.reservation_id == only_reservation)
        ):
            bay = trip.bay
            if any(b.bay == bay and b.vehicle not in (None, trip.vehicle) for b in situation.bays):
                # Its bay was taken meanwhile (a one-way arrival): end at a free one if any.
                bay = next((b.bay for b in situation.bays if b.vehicle is None), bay)
            return Decision(
                reason=Reason.TRIP_ENDED,
                member_id=mid,
                reservation_id=trip.reservation_id,
                bay=bay,
                vehicle=trip.vehicle,
                trip_id=trip.trip_id,
            )
    # A remote unlock narrowed to another car or booking neither ends that trip (its car
    # is not back) nor releases a second car: one open trip per member.
    out = next((t for t in situation.open_trips if t.member_id == mid), None)

    confirmed = [
        r
        for r in reservations
        if r.member_id == mid
        and r.status is ReservationStatus.CONFIRMED
        and (only_reservation is None or r.reservation_id == only_reservation)
        and (only_vehicle is None or r.vehicle == only_vehicle)
    ]

    # 2. A one-way car arriving here: end its trip (the arrival half).
    for res in confirmed:
        if res.dropoff != situation.station or res.pickup == situation.station:
            continue
        if _parked(situation, res.vehicle):
            continue  # already here
        if any(t.vehicle == res.vehicle for t in situation.open_trips):
            continue  # out on a trip from here: it cannot be arriving as another trip's second half
        in_time = not situation.clock_trusted or (
            res.start - policy.early_grace <= situation.now <= res.end + ARRIVAL_SLACK
        )
        free = next((b for b in situation.bays if b.vehicle is None), None)
        if in_time and free is not None:
            return Decision(
                reason=Reason.TRIP_ENDED,
                member_id=mid,
                reservation_id=res.reservation_id,
                bay=free.bay,
                vehicle=res.vehicle,
                detail="one-way arrival",
            )

    # 3. Everything below releases a car: the station must be able to decide.
    if out is not None:
        return Decision(reason=Reason.VEHICLE_OUT, member_id=mid, vehicle=out.vehicle, trip_id=out.trip_id,
                        detail="the member's open trip has not ended")
    if situation.mode is Mode.OUT_OF_SERVICE:
        return Decision(reason=Reason.OUT_OF_SERVICE, member_id=mid)
    if situation.mode is Mode.MAINTENANCE:
        return Decision(reason=Reason.MAINTENANCE, member_id=mid)
    if member.status is MemberStatus.SUSPENDED:
        return Decision(reason=Reason.MEMBER_SUSPENDED, member_id=mid)
    if member.status is MemberStatus.REVOKED:
        return Decision(reason=Reason.MEMBER_REVOKED, member_id=mid)
    if not situation.clock_trusted:
        return Decision(reason=Reason.CLOCK_UNTRUSTED, member_id=mid)
    now = situation.now
    if situation.roster_expires_at is None or now >= situation.roster_expires_at:
        return Decision(reason=Reason.ROSTER_EXPIRED, member_id=mid)
    if not member.valid_from <= now <= member.valid_until:
        return Decision(reason=Reason.OUTSIDE_VALIDITY, member_id=mid)

    # 4. A reservation picked up here and covering now.
    here = [r for r in confirmed if r.pickup == situation.station]
    covering = sorted((r for r in here if _covers(r, now, policy)), key=lambda r: r.start)
    refusal: Decision | None = None
    for res in covering:
        bay = _parked(situation, res.vehicle)
        if bay is not None:
            return Decision(
                reason=Reason.RESERVATION,
                member_id=mid,
                reservation_id=res.reservation_id,
                bay=bay.bay,
                vehicle=res.vehicle,
            )
        home = any(b.home_vehicle == res.vehicle for b in situation.bays)
        refusal = refusal or Decision(
            reason=Reason.VEHICLE_OUT if home else Reason.NO_VEHICLE,
            member_id=mid,
            reservation_id=res.reservation_id,
            vehicle=res.vehicle,
        )

    # 5. A walk-up on a free car nobody has booked soon.
    if policy.walk_up and only_reservation is None:
        for bay in situation.bays:
            if bay.vehicle is None or (only_vehicle is not None and bay.vehicle != only_vehicle):
                continue
            if not _reserved_soon(situation, bay.vehicle, policy):
                return Decision(reason=Reason.WALK_UP, member_id=mid, bay=bay.bay, vehicle=bay.vehicle)
        if refusal is None and not here:
            return Decision(reason=Reason.NO_VEHICLE, member_id=mid, detail="no free car without an upcoming reservation")

    if refusal is not None:
        return refusal
    if here:
        return Decision(reason=Reason.OUTSIDE_WINDOW, member_id=mid, reservation_id=here[0].reservation_id)
    return Decision(reason=Reason.NO_RESERVATION, member_id=mid)
