"""Offline authorization: one test per reason code, the grace and horizon
boundaries, remote-unlock narrowing, and hypothesis properties (including a
state machine of taps with simulated open trips)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from station.authorization import BayView, OpenTrip, Policy, Situation, authorize
from station.model import Decision, Member, MemberStatus, Mode, Reason, Reservation, ReservationStatus

HERE = "hede"
THERE = "bazouges"
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
SEC = timedelta(seconds=1)
POLICY = Policy()  # 15 min early and late grace, walk-up on, 60 min horizon
NO_WALK_UP = Policy(walk_up=False)


def member(mid: str = "m1", status: MemberStatus = MemberStatus.ACTIVE, *,
           valid_from: datetime = NOW - timedelta(days=365), valid_until: datetime = NOW + timedelta(days=365)) -> Member:
    return Member(member_id=mid, status=status, valid_from=valid_from, valid_until=valid_until)


def res(rid: str = "r1", *, mid: str = "m1", vehicle: str = "V1", start: datetime = NOW - 10 * MIN,
        end: datetime = NOW + 2 * 60 * MIN, pickup: str = HERE, dropoff: str = HERE,
        status: ReservationStatus = ReservationStatus.CONFIRMED) -> Reservation:
    return Reservation(reservation_id=rid, member_id=mid, vehicle=vehicle, start=start, end=end, pickup=pickup,
                       dropoff=dropoff, status=status)


def bays(*parked: str | None) -> tuple[BayView, ...]:
    """Bays b1, b2… with home vehicles V1, V2…; ``parked`` is what stands there now."""
    return tuple(BayView(bay=f"b{i}", home_vehicle=f"V{i}", vehicle=v) for i, v in enumerate(parked, start=1))


def situation(*, parked: tuple[str | None, ...] = ("V1",), now: datetime = NOW, clock_trusted: bool = True,
              mode: Mode = Mode.NORMAL, roster_expires_at: datetime | None = NOW + timedelta(days=7),
              open_trips: tuple[OpenTrip, ...] = (), vehicle_reservations: tuple[Reservation, ...] = ()) -> Situation:
    return Situation(station=HERE, now=now, clock_trusted=clock_trusted, mode=mode,
                     roster_expires_at=roster_expires_at, bays=bays(*parked), open_trips=open_trips,
                     vehicle_reservations=vehicle_reservations)


def trip(tid: str = "t1", *, mid: str = "m1", vehicle: str = "V1", bay: str = "b1",
         reservation_id: str | None = None) -> OpenTrip:
    return OpenTrip(trip_id=tid, member_id=mid, vehicle=vehicle, bay=bay, reservation_id=reservation_id)


# ---------------------------------------------------------------------------------------------
# One test per reason code
# ---------------------------------------------------------------------------------------------

def test_reservation_covering_now_releases_its_car() -> None:
    r = res()
    d = authorize(situation(parked=("V1",), vehicle_reservations=(r,)), POLICY, member=member(), reservations=[r])
    assert d == Decision(reason=Reason.RESERVATION, member_id="m1", reservation_id="r1", bay="b1", vehicle="V1")
    assert d.allowed and d.releases


def test_reservation_names_the_bay_where_its_car_stands_not_its_home_bay() -> None:
    r = res(vehicle="V2")
    d = authorize(situation(parked=("V2", None)), POLICY, member=member(), reservations=[r])
    assert (d.reason, d.bay, d.vehicle) == (Reason.RESERVATION, "b1", "V2")


def test_walk_up_on_a_free_car() -> None:
    d = authorize(situation(parked=("V1",)), POLICY, member=member())
    assert d == Decision(reason=Reason.WALK_UP, member_id="m1", bay="b1", vehicle="V1")
    assert d.allowed and d.releases


def test_walk_up_skips_empty_bays() -> None:
    d = authorize(situation(parked=(None, "V2")), POLICY, member=member())
    assert (d.reason, d.bay, d.vehicle) == (Reason.WALK_UP, "b2", "V2")


def test_open_trip_ends_here() -> None:
    t = trip(reservation_id="r1")
    d = authorize(situation(parked=(None,), open_trips=(t,)), POLICY, member=member(), reservations=[res()])
    assert d == Decision(reason=Reason.TRIP_ENDED, member_id="m1", reservation_id="r1", bay="b1", vehicle="V1",
                         trip_id="t1")
    assert d.allowed and not d.releases


def test_only_the_members_own_trip_ends() -> None:
    d = authorize(situation(parked=(None, "V2"), open_trips=(trip(mid="m2"),)), POLICY, member=member("m1"))
    assert (d.reason, d.vehicle) == (Reason.WALK_UP, "V2")


def test_one_way_arrival_ends_the_trip_at_a_free_bay() -> None:
    r = res(vehicle="X7", pickup=THERE, dropoff=HERE, start=NOW - 3 * 60 * MIN, end=NOW - 60 * MIN)
    d = authorize(situation(parked=("V1", None)), POLICY, member=member(), reservations=[r])
    assert d.reason is Reason.TRIP_ENDED
    assert (d.bay, d.vehicle, d.reservation_id, d.trip_id) == ("b2", "X7", "r1", None)
    assert d.detail == "one-way arrival"
    assert d.allowed and not d.releases


def test_one_way_arrival_may_be_a_day_late() -> None:
    r = res(vehicle="X7", pickup=THERE, dropoff=HERE, start=NOW - timedelta(hours=30), end=NOW - timedelta(hours=24))
    d = authorize(situation(parked=(None,)), NO_WALK_UP, member=member(), reservations=[r])
    assert d.reason is Reason.TRIP_ENDED
    late = situation(parked=(None,), now=NOW + SEC)
    assert authorize(late, NO_WALK_UP, member=member(), reservations=[r]).reason is Reason.NO_RESERVATION


def test_one_way_arrival_before_the_reservation_is_not_an_arrival() -> None:
    r = res(vehicle="X7", pickup=THERE, dropoff=HERE, start=NOW + 60 * MIN, end=NOW + 120 * MIN)
    d = authorize(situation(parked=(None,)), NO_WALK_UP, member=member(), reservations=[r])
    assert d.reason is Reason.NO_RESERVATION


def test_one_way_arrival_with_an_untrusted_clock_still_ends_the_trip() -> None:
    r = res(vehicle="X7", pickup=THERE, dropoff=HERE, start=NOW + timedelta(days=3), end=NOW + timedelta(days=4))
    d = authorize(situation(parked=(None,), clock_trusted=False), POLICY, member=member(), reservations=[r])
    assert (d.reason, d.vehicle) == (Reason.TRIP_ENDED, "X7")


def test_one_way_arrival_needs_a_free_bay() -> None:
    r = res(vehicle="X7", pickup=THERE, dropoff=HERE)
    d = authorize(situation(parked=("V1",)), NO_WALK_UP, member=member(), reservations=[r])
    assert d.reason is Reason.NO_RESERVATION


def test_one_way_car_already_parked_here_is_not_arriving_again() -> None:
    r = res(vehicle="X7", pickup=THERE, dropoff=HERE)
    d = authorize(situation(parked=("X7", None)), NO_WALK_UP, member=member(), reservations=[r])
    assert d.reason is Reason.NO_RESERVATION


def test_one_way_departure_from_here_releases() -> None:
    r = res(vehicle="V1", pickup=HERE, dropoff=THERE)
    d = authorize(situation(parked=("V1",)), POLICY, member=member(), reservations=[r])
    assert (d.reason, d.bay, d.reservation_id) == (Reason.RESERVATION, "b1", "r1")


def test_unknown_card() -> None:
    d = authorize(situation(), POLICY, member=None)
    assert d == Decision(reason=Reason.UNKNOWN_CARD)
    assert not d.allowed


def test_member_suspended() -> None:
    d = authorize(situation(), POLICY, member=member(status=MemberStatus.SUSPENDED), reservations=[res()])
    assert d == Decision(reason=Reason.MEMBER_SUSPENDED, member_id="m1")


def test_member_revoked() -> None:
    d = authorize(situation(), POLICY, member=member(status=MemberStatus.REVOKED), reservations=[res()])
    assert d == Decision(reason=Reason.MEMBER_REVOKED, member_id="m1")


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "reason"),
    [
        (NOW + SEC, NOW + timedelta(days=1), Reason.OUTSIDE_VALIDITY),  # not yet valid
        (NOW - timedelta(days=1), NOW - SEC, Reason.OUTSIDE_VALIDITY),  # no longer valid
        (NOW, NOW + timedelta(days=1), Reason.RESERVATION),  # bounds are inclusive
        (NOW - timedelta(days=1), NOW, Reason.RESERVATION),
    ],
)
def test_outside_validity(valid_from: datetime, valid_until: datetime, reason: Reason) -> None:
    m = member(valid_from=valid_from, valid_until=valid_until)
    d = authorize(situation(), POLICY, member=m, reservations=[res()])
    assert d.reason is reason
    if reason is Reason.OUTSIDE_VALIDITY:
        assert d == Decision(reason=reason, member_id="m1")


def test_no_reservation_when_walk_up_is_disabled() -> None:
    d = authorize(situation(), NO_WALK_UP, member=member())
    assert d == Decision(reason=Reason.NO_RESERVATION, member_id="m1")


def test_cancelled_reservation_does_not_count() -> None:
    r = res(status=ReservationStatus.CANCELLED)
    d = authorize(situation(), NO_WALK_UP, member=member(), reservations=[r])
    assert d.reason is Reason.NO_RESERVATION


def test_someone_elses_reservation_does_not_count() -> None:
    r = res(mid="m2")
    d = authorize(situation(), NO_WALK_UP, member=member("m1"), reservations=[r])
    assert d.reason is Reason.NO_RESERVATION


def test_reservation_picked_up_elsewhere_does_not_release_here() -> None:
    r = res(pickup=THERE, dropoff=THERE)
    d = authorize(situation(), NO_WALK_UP, member=member(), reservations=[r])
    assert d.reason is Reason.NO_RESERVATION


def test_outside_window() -> None:
    r = res(start=NOW + 3 * 60 * MIN, end=NOW + 5 * 60 * MIN)
    d = authorize(situation(), NO_WALK_UP, member=member(), reservations=[r])
    assert d == Decision(reason=Reason.OUTSIDE_WINDOW, member_id="m1", reservation_id="r1")


def test_outside_window_when_the_only_car_is_booked_soon_by_the_member() -> None:
    # Walk-up is on, but the car is protected by the member's own upcoming booking.
    r = res(start=NOW + 30 * MIN, end=NOW + 90 * MIN)
    d = authorize(situation(vehicle_reservations=(r,)), POLICY, member=member(), reservations=[r])
    assert (d.reason, d.reservation_id, d.bay) == (Reason.OUTSIDE_WINDOW, "r1", None)


def test_no_vehicle_when_the_reserved_car_does_not_belong_here() -> None:
    r = res(vehicle="X7")
    d = authorize(situation(parked=("V1",)), NO_WALK_UP, member=member(), reservations=[r])
    assert d == Decision(reason=Reason.NO_VEHICLE, member_id="m1", reservation_id="r1", vehicle="X7")


def test_no_vehicle_for_a_walk_up_when_every_car_is_out() -> None:
    d = authorize(situation(parked=(None, None)), POLICY, member=member())
    assert d.reason is Reason.NO_VEHICLE
    assert d.bay is None and d.vehicle is None


def test_vehicle_out_when_the_reserved_home_car_is_away() -> None:
    r = res(vehicle="V1")
    d = authorize(situation(parked=(None,)), POLICY, member=member(), reservations=[r])
    assert d == Decision(reason=Reason.VEHICLE_OUT, member_id="m1", reservation_id="r1", vehicle="V1")


def test_reserved_car_away_but_another_car_free_walks_up() -> None:
    r = res(vehicle="V1")
    d = authorize(situation(parked=(None, "V2")), POLICY, member=member(), reservations=[r])
    assert (d.reason, d.vehicle, d.bay) == (Reason.WALK_UP, "V2", "b2")


@pytest.mark.parametrize("expires_at", [NOW, NOW - SEC, NOW - timedelta(days=3), None],
                         ids=["expires-now", "expired-1s", "expired-3d", "missing"])
def test_roster_expired(expires_at: datetime | None) -> None:
    d = authorize(situation(roster_expires_at=expires_at), POLICY, member=member(), reservations=[res()])
    assert d == Decision(reason=Reason.ROSTER_EXPIRED, member_id="m1")


def test_roster_valid_one_second_more() -> None:
    d = authorize(situation(roster_expires_at=NOW + SEC), POLICY, member=member(), reservations=[res()])
    assert d.reason is Reason.RESERVATION


def test_clock_untrusted() -> None:
    d = authorize(situation(clock_trusted=False), POLICY, member=member(), reservations=[res()])
    assert d == Decision(reason=Reason.CLOCK_UNTRUSTED, member_id="m1")


def test_out_of_service() -> None:
    d = authorize(situation(mode=Mode.OUT_OF_SERVICE), POLICY, member=member(), reservations=[res()])
    assert d == Decision(reason=Reason.OUT_OF_SERVICE, member_id="m1")


def test_maintenance() -> None:
    d = authorize(situation(mode=Mode.MAINTENANCE), POLICY, member=member(), reservations=[res()])
    assert d == Decision(reason=Reason.MAINTENANCE, member_id="m1")


def test_every_reason_the_rule_produces_is_covered() -> None:
    """Keeps this file honest: the reasons the rule can give are the ones tested above;
    the others come from the card check and the tap gate."""
    produced = {Reason.RESERVATION, Reason.WALK_UP, Reason.TRIP_ENDED, Reason.UNKNOWN_CARD, Reason.MEMBER_SUSPENDED,
                Reason.MEMBER_REVOKED, Reason.OUTSIDE_VALIDITY, Reason.NO_RESERVATION, Reason.OUTSIDE_WINDOW,
                Reason.NO_VEHICLE, Reason.VEHICLE_OUT, Reason.ROSTER_EXPIRED, Reason.CLOCK_UNTRUSTED,
                Reason.OUT_OF_SERVICE, Reason.MAINTENANCE}
    elsewhere = {Reason.INVALID_CREDENTIAL, Reason.SIGNED_CARD_REQUIRED, Reason.CARD_REVOKED, Reason.RATE_LIMITED,
                 Reason.DUPLICATE_TAP, Reason.BAY_FAULT}
    assert produced | elsewhere == set(Reason)
    assert {r for r in Reason if r.allows} == {Reason.RESERVATION, Reason.WALK_UP, Reason.TRIP_ENDED}


# ---------------------------------------------------------------------------------------------
# Precedence and boundaries
# ---------------------------------------------------------------------------------------------

def test_checks_come_in_order_mode_status_clock_roster_validity() -> None:
    bad = member(status=MemberStatus.SUSPENDED, valid_until=NOW - SEC)
    everything_wrong = situation(mode=Mode.MAINTENANCE, clock_trusted=False, roster_expires_at=None)
    assert authorize(everything_wrong, POLICY, member=bad).reason is Reason.MAINTENANCE
    normal = dataclasses.replace(everything_wrong, mode=Mode.NORMAL)
    assert authorize(normal, POLICY, member=bad).reason is Reason.MEMBER_SUSPENDED
    assert authorize(normal, POLICY, member=member(valid_until=NOW - SEC)).reason is Reason.CLOCK_UNTRUSTED
    trusted = dataclasses.replace(normal, clock_trusted=True)
    assert authorize(trusted, POLICY, member=member(valid_until=NOW - SEC)).reason is Reason.ROSTER_EXPIRED
    rostered = dataclasses.replace(trusted, roster_expires_at=NOW + MIN)
    assert authorize(rostered, POLICY, member=member(valid_until=NOW - SEC)).reason is Reason.OUTSIDE_VALIDITY


@pytest.mark.parametrize(
    ("now", "reason"),
    [
        (NOW - 15 * MIN, Reason.RESERVATION),  # exactly start - early grace
        (NOW - 15 * MIN - SEC, Reason.OUTSIDE_WINDOW),  # one second before
        (NOW + 60 * MIN + 15 * MIN, Reason.RESERVATION),  # exactly end + late grace
        (NOW + 60 * MIN + 15 * MIN + SEC, Reason.OUTSIDE_WINDOW),  # one second after
    ],
)
def test_grace_boundaries(now: datetime, reason: Reason) -> None:
    r = res(start=NOW, end=NOW + 60 * MIN)
    d = authorize(situation(now=now), NO_WALK_UP, member=member(), reservations=[r])
    assert d.reason is reason


def test_grace_periods_are_configurable() -> None:
    r = res(start=NOW, end=NOW + 60 * MIN)
    tight = Policy(early_grace=timedelta(0), late_grace=timedelta(0), walk_up=False)
    assert authorize(situation(now=NOW - SEC), tight, member=member(), reservations=[r]).reason is Reason.OUTSIDE_WINDOW
    assert authorize(situation(now=NOW), tight, member=member(), reservations=[r]).reason is Reason.RESERVATION
    wide = Policy(early_grace=timedelta(hours=1), walk_up=False)
    assert authorize(situation(now=NOW - 60 * MIN), wide, member=member(), reservations=[r]).reason is Reason.RESERVATION


def test_the_earliest_covering_reservation_wins() -> None:
    r_late = res("r-late", vehicle="V2", start=NOW - 5 * MIN)
    r_early = res("r-early", vehicle="V1", start=NOW - 10 * MIN)
    d = authorize(situation(parked=("V1", "V2")), POLICY, member=member(), reservations=[r_late, r_early])
    assert (d.reservation_id, d.vehicle) == ("r-early", "V1")


def test_a_covering_reservation_with_its_car_out_falls_back_to_another_covering_one() -> None:
    r1 = res("r1", vehicle="V1", start=NOW - 10 * MIN)
    r2 = res("r2", vehicle="V2", start=NOW - 5 * MIN)
    d = authorize(situation(parked=(None, "V2")), NO_WALK_UP, member=member(), reservations=[r1, r2])
    assert (d.reason, d.reservation_id, d.bay) == (Reason.RESERVATION, "r2", "b2")


# ---------------------------------------------------------------------------------------------
# Walk-up horizon
# ---------------------------------------------------------------------------------------------

def test_walk_up_refused_when_the_car_is_booked_within_the_horizon() -> None:
    other = res("r9", mid="m2", start=NOW + 30 * MIN, end=NOW + 90 * MIN)
    d = authorize(situation(vehicle_reservations=(other,)), POLICY, member=member())
    assert d.reason is Reason.NO_VEHICLE
    assert d.bay is None


def test_walk_up_takes_another_car_than_the_one_booked_soon() -> None:
    other = res("r9", mid="m2", vehicle="V1", start=NOW + 30 * MIN, end=NOW + 90 * MIN)
    d = authorize(situation(parked=("V1", "V2"), vehicle_reservations=(other,)), POLICY, member=member())
    assert (d.reason, d.vehicle, d.bay) == (Reason.WALK_UP, "V2", "b2")


def test_walk_up_refused_while_the_car_is_booked_now() -> None:
    other = res("r9", mid="m2", start=NOW - 60 * MIN, end=NOW + 10 * MIN)
    assert authorize(situation(vehicle_reservations=(other,)), POLICY, member=member()).reason is Reason.NO_VEHICLE


@pytest.mark.parametrize(
    ("start", "walk_up"),
    [
        # The booked member may come early_grace before start: the car is protected from
        # now + horizon + early_grace on.
        (NOW + 60 * MIN + 15 * MIN, False),
        (NOW + 60 * MIN + 15 * MIN + SEC, True),
        (NOW + timedelta(days=1), True),
    ],
)
def test_walk_up_horizon_boundary(start: datetime, walk_up: bool) -> None:
    other = res("r9", mid="m2", start=start, end=start + 60 * MIN)
    d = authorize(situation(vehicle_reservations=(other,)), POLICY, member=member())
    assert (d.reason is Reason.WALK_UP) is walk_up


@pytest.mark.parametrize(
    "other",
    [
        res("r9", mid="m2", start=NOW + 30 * MIN, end=NOW + 90 * MIN, status=ReservationStatus.CANCELLED),
        res("r9", mid="m2", start=NOW - 120 * MIN, end=NOW - 15 * MIN - SEC),  # over, grace included
        res("r9", mid="m2", vehicle="V2", start=NOW + 30 * MIN, end=NOW + 90 * MIN),  # another car
    ],
    ids=["cancelled", "over", "other-car"],
)
def test_walk_up_not_blocked_by(other: Reservation) -> None:
    d = authorize(situation(vehicle_reservations=(other,)), POLICY, member=member())
    assert (d.reason, d.vehicle) == (Reason.WALK_UP, "V1")


def test_walk_up_horizon_is_configurable() -> None:
    other = res("r9", mid="m2", start=NOW + 30 * MIN, end=NOW + 90 * MIN)
    short = Policy(walk_up_horizon=timedelta(minutes=10), early_grace=timedelta(minutes=5))
    d = authorize(situation(vehicle_reservations=(other,)), short, member=member())
    assert d.reason is Reason.WALK_UP


# ---------------------------------------------------------------------------------------------
# Ending a trip is never refused
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "changes",
    [
        {"mode": Mode.OUT_OF_SERVICE},
        {"mode": Mode.MAINTENANCE},
        {"roster_expires_at": None},
        {"roster_expires_at": NOW - timedelta(days=30)},
        {"clock_trusted": False},
        {"mode": Mode.OUT_OF_SERVICE, "roster_expires_at": None, "clock_trusted": False},
    ],
    ids=["out-of-service", "maintenance", "no-roster", "roster-expired", "clock-untrusted", "all"],
)
@pytest.mark.parametrize("status", list(MemberStatus))
def test_open_trip_ends_whatever_the_mode_roster_clock_or_member(changes: dict, status: MemberStatus) -> None:
    base = situation(parked=(None,), open_trips=(trip(),))
    m = member(status=status, valid_until=NOW - timedelta(days=2))
    d = authorize(dataclasses.replace(base, **changes), POLICY, member=m)
    assert (d.reason, d.trip_id, d.bay, d.vehicle) == (Reason.TRIP_ENDED, "t1", "b1", "V1")


@pytest.mark.parametrize("mode", [Mode.OUT_OF_SERVICE, Mode.MAINTENANCE])
def test_one_way_arrival_ends_whatever_the_mode_or_member(mode: Mode) -> None:
    r = res(vehicle="X7", pickup=THERE, dropoff=HERE)
    d = authorize(situation(parked=(None,), mode=mode, roster_expires_at=None), POLICY,
                  member=member(status=MemberStatus.REVOKED), reservations=[r])
    assert (d.reason, d.vehicle, d.bay) == (Reason.TRIP_ENDED, "X7", "b1")


def test_returning_car_gets_a_free_bay_when_its_own_is_taken() -> None:
    # V1 left b1 on a round trip; a one-way car then arrived into the empty b1.
    t = trip(vehicle="V1", bay="b1")
    d = authorize(situation(parked=("X7", None), open_trips=(t,)), POLICY, member=member())
    assert (d.reason, d.trip_id, d.vehicle, d.bay) == (Reason.TRIP_ENDED, "t1", "V1", "b2")


def test_returning_car_keeps_its_bay_when_no_other_is_free() -> None:
    t = trip(vehicle="V1", bay="b1")
    d = authorize(situation(parked=("X7",), open_trips=(t,)), POLICY, member=member())
    assert (d.reason, d.trip_id, d.bay) == (Reason.TRIP_ENDED, "t1", "b1")  # never refused


def test_one_way_arrival_of_a_car_out_on_a_trip_from_here_is_not_an_arrival() -> None:
    # The car is with m2 on a round trip from here: m1's booking cannot be bringing it in.
    r = res(vehicle="V1", pickup=THERE, dropoff=HERE)
    s = situation(parked=(None, None), open_trips=(trip(mid="m2", vehicle="V1", bay="b1"),))
    d = authorize(s, NO_WALK_UP, member=member("m1"), reservations=[r])
    assert d.reason is Reason.NO_RESERVATION


# ---------------------------------------------------------------------------------------------
# Remote unlock narrowing
# ---------------------------------------------------------------------------------------------

def test_only_reservation_picks_that_reservation() -> None:
    r1 = res("r1", vehicle="V1")
    r2 = res("r2", vehicle="V2", start=NOW - 5 * MIN)
    s = situation(parked=("V1", "V2"))
    assert authorize(s, POLICY, member=member(), reservations=[r1, r2]).reservation_id == "r1"
    d = authorize(s, POLICY, member=member(), reservations=[r1, r2], only_reservation="r2")
    assert (d.reason, d.reservation_id, d.vehicle, d.bay) == (Reason.RESERVATION, "r2", "V2", "b2")


def test_only_reservation_never_falls_back_to_a_walk_up() -> None:
    r1 = res("r1", vehicle="V1")
    d = authorize(situation(parked=("V1", "V2")), POLICY, member=member(), reservations=[r1], only_reservation="r404")
    assert d == Decision(reason=Reason.NO_RESERVATION, member_id="m1")


def test_only_reservation_outside_its_window() -> None:
    r1 = res("r1", start=NOW + 3 * 60 * MIN, end=NOW + 4 * 60 * MIN)
    d = authorize(situation(), POLICY, member=member(), reservations=[r1], only_reservation="r1")
    assert (d.reason, d.reservation_id) == (Reason.OUTSIDE_WINDOW, "r1")


def test_only_vehicle_narrows_the_walk_up() -> None:
    s = situation(parked=("V1", "V2"))
    assert authorize(s, POLICY, member=member(), only_vehicle="V2").bay == "b2"
    d = authorize(s, POLICY, member=member(), only_vehicle="V9")
    assert (d.reason, d.bay) == (Reason.NO_VEHICLE, None)


def test_only_vehicle_narrows_the_reservations() -> None:
    r1 = res("r1", vehicle="V1")
    r2 = res("r2", vehicle="V2", start=NOW - 5 * MIN)
    d = authorize(situation(parked=("V1", "V2")), NO_WALK_UP, member=member(), reservations=[r1, r2], only_vehicle="V2")
    assert (d.reservation_id, d.vehicle) == ("r2", "V2")


def test_only_vehicle_ends_the_trip_of_that_vehicle() -> None:
    d = authorize(situation(parked=(None,), open_trips=(trip(),)), POLICY, member=member(), only_vehicle="V1")
    assert (d.reason, d.trip_id) == (Reason.TRIP_ENDED, "t1")


def test_only_reservation_ends_the_trip_of_that_reservation() -> None:
    s = situation(parked=(None,), open_trips=(trip(reservation_id="r1"),))
    d = authorize(s, POLICY, member=member(), reservations=[res()], only_reservation="r1")
    assert (d.reason, d.trip_id) == (Reason.TRIP_ENDED, "t1")


def test_remote_unlock_of_another_car_does_not_end_the_open_trip_nor_start_a_second() -> None:
    # m1 is out with V1 (walk-up); an unlock request for V2 or for a booking of V2 must
    # neither end the V1 trip (the car is not back) nor release a second car.
    s = situation(parked=(None, "V2"), open_trips=(trip(vehicle="V1", bay="b1"),))
    r2 = res("r2", vehicle="V2")
    by_vehicle = authorize(s, POLICY, member=member(), reservations=[r2], only_vehicle="V2")
    by_reservation = authorize(s, POLICY, member=member(), reservations=[r2], only_reservation="r2")
    for d in (by_vehicle, by_reservation):
        assert not d.allowed
        assert (d.reason, d.vehicle, d.trip_id, d.bay) == (Reason.VEHICLE_OUT, "V1", "t1", None)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

VEHICLES = ("V1", "V2", "V3", "X7")
MEMBERS = ("m1", "m2", "m3")
STATIONS = (HERE, THERE)
offsets = st.integers(min_value=-48 * 60, max_value=48 * 60).map(lambda m: m * MIN)
seconds = st.integers(min_value=-120, max_value=120).map(lambda s: s * SEC)


@st.composite
def reservations_st(draw: st.DrawFn, members: tuple[str, ...] = MEMBERS) -> Reservation:
    start = NOW + draw(offsets) + draw(seconds)
    length = draw(st.integers(min_value=1, max_value=8 * 60)) * MIN
    return Reservation(
        reservation_id=f"r{draw(st.integers(0, 10**6))}",
        member_id=draw(st.sampled_from(members)),
        vehicle=draw(st.sampled_from(VEHICLES)),
        start=start,
        end=start + length,
        pickup=draw(st.sampled_from(STATIONS)),
        dropoff=draw(st.sampled_from(STATIONS)),
        status=draw(st.sampled_from(list(ReservationStatus))),
    )


policies = st.builds(
    Policy,
    early_grace=st.integers(0, 60).map(lambda m: m * MIN),
    late_grace=st.integers(0, 60).map(lambda m: m * MIN),
    walk_up=st.booleans(),
    walk_up_horizon=st.integers(0, 180).map(lambda m: m * MIN),
)


@st.composite
def members_st(draw: st.DrawFn) -> Member:
    start = NOW + draw(offsets) * 20
    return Member(member_id="m1", status=draw(st.sampled_from(list(MemberStatus))), valid_from=start,
                  valid_until=start + draw(st.integers(0, 800)) * timedelta(days=1))


@st.composite
def situations(draw: st.DrawFn) -> Situation:
    n = draw(st.integers(1, 3))
    # Each car stands at most at one bay.
    parked: list[str | None] = []
    for i in range(1, n + 1):
        choice = draw(st.sampled_from([f"V{i}", None, "X7"]))
        parked.append(None if choice in parked else choice)
    views = bays(*parked)
    # A car out on a trip left an empty bay, which a one-way arrival (X7) may have taken since.
    left = [b for b in views if b.vehicle in (None, "X7")]
    trips = []
    on_trip = set(parked)
    for b in left:
        if draw(st.booleans()):
            vehicle = b.home_vehicle if b.home_vehicle not in on_trip else "X7"
            if vehicle in on_trip:
                continue
            on_trip.add(vehicle)
            trips.append(OpenTrip(trip_id=f"t-{b.bay}", member_id=draw(st.sampled_from(MEMBERS)), vehicle=vehicle,
                                  bay=b.bay, reservation_id=draw(st.sampled_from([None, "r1"]))))
    expires = draw(st.one_of(st.none(), offsets.map(lambda o: NOW + o)))
    parked_cars = {v for v in parked if v}
    vres = tuple(r for r in draw(st.lists(reservations_st(), max_size=4)) if r.vehicle in parked_cars)
    return Situation(station=HERE, now=NOW, clock_trusted=draw(st.booleans()),
                     mode=draw(st.sampled_from(list(Mode))), roster_expires_at=expires, bays=views,
                     open_trips=tuple(trips), vehicle_reservations=vres)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Situation, Policy, Member | None, list[Reservation], dict[str, str]]:
    s = draw(situations())
    m = draw(st.one_of(st.none(), members_st()))
    rs = draw(st.lists(reservations_st(members=("m1", "m2")), max_size=4))
    if m is not None:
        # The member's reservations of the parked cars are also among the vehicle's reservations.
        parked = {b.vehicle for b in s.bays if b.vehicle}
        mine = tuple(r for r in rs if r.vehicle in parked and r not in s.vehicle_reservations)
        s = dataclasses.replace(s, vehicle_reservations=s.vehicle_reservations + mine)
    narrow: dict[str, str] = {}
    if draw(st.booleans()):
        narrow["only_vehicle"] = draw(st.sampled_from(VEHICLES))
    if rs and draw(st.booleans()):
        narrow["only_reservation"] = draw(st.sampled_from([r.reservation_id for r in rs] + ["r-none"]))
    return s, draw(policies), m, rs, narrow


def _blocked(s: Situation, m: Member | None) -> bool:
    return (
        m is None
        or m.status is not MemberStatus.ACTIVE
        or not s.clock_trusted
        or s.roster_expires_at is None
        or s.roster_expires_at <= s.now
        or s.mode is not Mode.NORMAL
        or not m.valid_from <= s.now <= m.valid_until
    )


@settings(max_examples=300, deadline=None)
@given(case=cases())
def test_properties_of_every_decision(case: tuple) -> None:
    s, policy, m, rs, narrow = case
    d = authorize(s, policy, member=m, reservations=rs, **narrow)

    # Deterministic: the same situation always gets the same answer.
    assert authorize(s, policy, member=m, reservations=list(rs), **narrow) == d

    if d.releases:
        # An allowed release names a bay where that very car stands.
        bay = next(b for b in s.bays if b.bay == d.bay)
        assert bay.vehicle == d.vehicle is not None
        assert not _blocked(s, m)
        assert m is not None and d.member_id == m.member_id
        assert not any(t.member_id == m.member_id for t in s.open_trips)  # one open trip per member
        if "only_vehicle" in narrow:
            assert d.vehicle == narrow["only_vehicle"]
    if d.reason is Reason.RESERVATION:
        r = next(r for r in rs if r.reservation_id == d.reservation_id and r.vehicle == d.vehicle)
        assert r.member_id == m.member_id and r.status is ReservationStatus.CONFIRMED and r.pickup == HERE
        assert r.start - policy.early_grace <= s.now <= r.end + policy.late_grace
        assert narrow.get("only_reservation", r.reservation_id) == r.reservation_id
    if d.reason is Reason.WALK_UP:
        assert policy.walk_up and "only_reservation" not in narrow
        for r in s.vehicle_reservations:
            if r.vehicle == d.vehicle and r.status is ReservationStatus.CONFIRMED:
                # Nobody has this car booked from now to the horizon.
                assert (r.start - policy.early_grace > s.now + policy.walk_up_horizon
                        or r.end + policy.late_grace < s.now)
    if d.reason is Reason.TRIP_ENDED:
        assert m is not None and d.member_id == m.member_id and d.bay is not None
        if d.trip_id is not None:
            t = next(t for t in s.open_trips if t.trip_id == d.trip_id)
            assert (t.member_id, t.vehicle) == (m.member_id, d.vehicle)
            # The car comes back to an empty bay, its own if it is still free; to its own
            # (taken) bay only when the station is full: ending is never refused.
            target = next(b for b in s.bays if b.bay == d.bay)
            if target.vehicle is not None:
                assert d.bay == t.bay and all(b.vehicle is not None for b in s.bays)
            elif next(b for b in s.bays if b.bay == t.bay).vehicle is None:
                assert d.bay == t.bay
        else:  # a one-way arrival into an empty bay
            assert next(b for b in s.bays if b.bay == d.bay).vehicle is None
            assert all(b.vehicle != d.vehicle for b in s.bays)
    if not d.allowed:
        assert d.bay is None  # a refusal never names a bay to release
    if m is None:
        assert d == Decision(reason=Reason.UNKNOWN_CARD)


@settings(max_examples=200, deadline=None)
@given(case=cases())
def test_never_releases_when_blocked(case: tuple) -> None:
    s, policy, m, rs, narrow = case
    for blocked in (
        dataclasses.replace(s, clock_trusted=False),
        dataclasses.replace(s, roster_expires_at=None),
        dataclasses.replace(s, roster_expires_at=s.now),
        dataclasses.replace(s, mode=Mode.MAINTENANCE),
        dataclasses.replace(s, mode=Mode.OUT_OF_SERVICE),
    ):
        d = authorize(blocked, policy, member=m, reservations=rs, **narrow)
        assert not d.releases
        assert d.allowed == (d.reason is Reason.TRIP_ENDED)
    if m is not None:
        for status in (MemberStatus.SUSPENDED, MemberStatus.REVOKED):
            d = authorize(s, policy, member=dataclasses.replace(m, status=status), reservations=rs, **narrow)
            assert not d.releases


@settings(max_examples=200, deadline=None)
@given(case=cases())
def test_an_open_trip_always_ends_for_its_member(case: tuple) -> None:
    s, policy, m, rs, _ = case
    m = m or member("m1")
    mine = [t for t in s.open_trips if t.member_id == m.member_id]
    d = authorize(s, policy, member=m, reservations=rs)
    if mine:
        assert (d.reason, d.trip_id) == (Reason.TRIP_ENDED, mine[0].trip_id)


# ---------------------------------------------------------------------------------------------
# Trips: a station living through a sequence of taps
# ---------------------------------------------------------------------------------------------

class StationTrips(RuleBasedStateMachine):
    """A station with two bays; members tap (or unlock remotely) as time goes by.

    The machine applies each decision the way the service does (a release opens a
    round trip or a one-way departure, a TRIP_ENDED closes the trip or parks the
    arriving car) and checks the station's own view stays consistent.
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = NOW
        self.parked: dict[str, str | None] = {"b1": "V1", "b2": "V2"}
        self.trips: dict[str, OpenTrip] = {}
        self.reservations: list[Reservation] = []
        self.members = {mid: member(mid) for mid in MEMBERS}
        self.policy = POLICY
        self.mode = Mode.NORMAL
        self.trusted = True
        self.seq = 0
        self.overflow: set[str] = set()  # cars at the station without a bay

    @initialize(policy=policies)
    def set_policy(self, policy: Policy) -> None:
        self.policy = policy

    def situation(self) -> Situation:
        views = tuple(BayView(bay=b, home_vehicle=f"V{b[1]}", vehicle=v) for b, v in self.parked.items())
        parked = set(self.parked.values())
        return Situation(
            station=HERE, now=self.now, clock_trusted=self.trusted, mode=self.mode,
            roster_expires_at=NOW + timedelta(days=30), bays=views, open_trips=tuple(self.trips.values()),
            vehicle_reservations=tuple(r for r in self.reservations
                                       if r.vehicle in parked and r.status is ReservationStatus.CONFIRMED),
        )

    def apply(self, d: Decision) -> None:
        event(d.reason.value + (" (one-way arrival)" if d.detail == "one-way arrival" else ""))
        if d.releases:
            assert d.bay is not None and self.parked[d.bay] == d.vehicle
            self.parked[d.bay] = None
            r = next((r for r in self.reservations if r.reservation_id == d.reservation_id), None)
            if r is None or not r.one_way:
                self.seq += 1
                tid = f"t{self.seq}"
                self.trips[tid] = OpenTrip(trip_id=tid, member_id=d.member_id or "", vehicle=d.vehicle or "",
                                           bay=d.bay, reservation_id=d.reservation_id)
            # A one-way departure is not open here: the other station sees the arrival.
        elif d.reason is Reason.TRIP_ENDED:
            assert d.bay is not None and d.vehicle is not None
            if d.trip_id is not None:
                assert self.trips.pop(d.trip_id).vehicle == d.vehicle
            there = self.parked[d.bay]
            if there not in (None, d.vehicle):
                # Only when the station is full: the car ends its trip at its own bay, and
                # the one-way car that took the bay meanwhile is left without a socket.
                assert d.trip_id is not None and all(v is not None for v in self.parked.values())
                self.overflow.add(there)
            self.overflow.discard(d.vehicle)
            self.parked[d.bay] = d.vehicle

    @rule(mid=st.sampled_from(MEMBERS))
    def tap(self, mid: str) -> None:
        m = self.members[mid]
        mine = [r for r in self.reservations if r.member_id == mid]
        d = authorize(self.situation(), self.policy, member=m, reservations=mine)
        if any(t.member_id == mid for t in self.trips.values()):
            assert d.reason is Reason.TRIP_ENDED and d.trip_id is not None
        self.apply(d)

    @rule(mid=st.sampled_from(MEMBERS), vehicle=st.sampled_from(VEHICLES), by_reservation=st.booleans())
    def remote_unlock(self, mid: str, vehicle: str, by_reservation: bool) -> None:
        mine = [r for r in self.reservations if r.member_id == mid]
        narrow: dict[str, str] = {"only_vehicle": vehicle}
        if by_reservation and mine:
            narrow = {"only_reservation": mine[-1].reservation_id}
        d = authorize(self.situation(), self.policy, member=self.members[mid], reservations=mine, **narrow)
        self.apply(d)

    @rule(mid=st.sampled_from(MEMBERS), vehicle=st.sampled_from(VEHICLES), pickup=st.sampled_from(STATIONS),
          dropoff=st.sampled_from(STATIONS), start=st.integers(-240, 120), length=st.integers(10, 300),
          cancelled=st.booleans())
    def book(self, mid: str, vehicle: str, pickup: str, dropoff: str, start: int, length: int,
             cancelled: bool) -> None:
        self.seq += 1
        begin = self.now + start * MIN
        self.reservations.append(Reservation(
            reservation_id=f"r{self.seq}", member_id=mid, vehicle=vehicle, start=begin, end=begin + length * MIN,
            pickup=pickup, dropoff=dropoff,
            status=ReservationStatus.CANCELLED if cancelled and start % 4 == 0 else ReservationStatus.CONFIRMED,
        ))

    @rule(mid=st.sampled_from(MEMBERS), vehicle=st.sampled_from(VEHICLES), one_way_in=st.booleans())
    def book_now(self, mid: str, vehicle: str, one_way_in: bool) -> None:
        """A booking covering now (or, one way to here, one that brings a car in)."""
        self.book(mid, vehicle, THERE if one_way_in else HERE, HERE, -30, 120, False)

    @rule(minutes=st.integers(1, 120))
    def time_passes(self, minutes: int) -> None:
        self.now += minutes * MIN

    @rule(mode=st.sampled_from(list(Mode)), trusted=st.booleans())
    def station_changes(self, mode: Mode, trusted: bool) -> None:
        self.mode, self.trusted = mode, trusted

    @rule()
    def station_back_to_normal(self) -> None:
        self.mode, self.trusted = Mode.NORMAL, True

    @rule(mid=st.sampled_from(MEMBERS), status=st.sampled_from(list(MemberStatus)))
    def roster_changes(self, mid: str, status: MemberStatus) -> None:
        self.members[mid] = dataclasses.replace(self.members[mid], status=status)

    @rule(mid=st.sampled_from(MEMBERS))
    def tap_again(self, mid: str) -> None:
        self.tap(mid)

    @invariant()
    def one_open_trip_per_vehicle_and_member(self) -> None:
        vehicles = [t.vehicle for t in self.trips.values()]
        members = [t.member_id for t in self.trips.values()]
        assert len(vehicles) == len(set(vehicles))
        assert len(members) == len(set(members))

    @invariant()
    def a_car_is_either_parked_once_or_away(self) -> None:
        parked = [v for v in self.parked.values() if v is not None]
        assert len(parked) == len(set(parked))
        assert not (set(parked) | self.overflow) & {t.vehicle for t in self.trips.values()}

    @invariant()
    def open_trips_match_the_bays(self) -> None:
        for t in self.trips.values():
            assert t.bay in self.parked and t.member_id in MEMBERS


StationTrips.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestStationTrips = StationTrips.TestCase
