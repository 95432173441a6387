"""The station service on simulated devices: the loop of DESIGN §2, and what
happens when a device misbehaves."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from station.demo import CARDS, UNKNOWN
from station.model import CardPresented, Mode, Reason
from tests.conftest import Rig, make_rig


def card(name: str) -> CardPresented:
    return CardPresented(uid=bytes.fromhex(CARDS.get(name, name)))


async def test_journal_first_then_plug_off_then_release(rig: Rig) -> None:
    order: list[str] = []
    plug, release = rig.plugs["1"], rig.releases["1"]
    original_switch, original_release = plug.switch, release.release

    async def switch(on: bool) -> bool:
        order.append(f"plug {'on' if on else 'off'} (journal has trip: {rig.last('trip.started') is not None})")
        return await original_switch(on)

    async def do_release() -> None:
        order.append("release")
        await original_release()

    plug.switch, release.release = switch, do_release  # type: ignore[method-assign]
    decision = await rig.station.on_card(card("alice"))
    assert decision is not None and decision.reason is Reason.RESERVATION
    assert order == ["plug off (journal has trip: True)", "release"]
    assert rig.types()[-2:] == ["card.tapped", "trip.started"]
    assert rig.reader.feedbacks == [True]  # then the reader says yes
    assert rig.station.bays["1"].vehicle is None


async def test_round_trip_price_and_charging(rig: Rig) -> None:
    await rig.station.on_card(card("alice"))
    await rig.clock.advance(61 * 60 + 1, step=30)
    decision = await rig.station.on_card(card("alice"))
    assert decision is not None and decision.reason is Reason.TRIP_ENDED
    ended = rig.last("trip.ended")
    assert ended is not None and ended["data"]["price_cents"] == 100  # 1:01:01 -> two started half hours
    assert ended["data"]["duration_source"] == "monotonic"
    assert rig.plugs["1"].relay_on


async def test_unknown_card_is_refused_and_journaled(rig: Rig) -> None:
    decision = await rig.station.on_card(card(UNKNOWN))
    assert decision is not None and decision.reason is Reason.UNKNOWN_CARD
    tapped = rig.last("card.tapped")
    assert tapped is not None and tapped["data"]["decision"] == "refused"
    assert UNKNOWN.lower() not in str(tapped).lower()  # the UID is never journaled
    assert rig.releases["1"].pulses == 0


async def test_same_card_within_debounce_is_one_tap(rig: Rig) -> None:
    assert await rig.station.on_card(card("alice")) is not None
    assert await rig.station.on_card(card("alice")) is None  # held / tapped again at once
    assert rig.types().count("card.tapped") == 1


async def test_unknown_card_flood_locks_the_reader_out(rig: Rig) -> None:
    for i in range(rig.config.policy.unknown_card_limit_per_min + 1):
        await rig.station.on_card(CardPresented(uid=bytes([0x10, 0, 0, i])))
    decision = await rig.station.on_card(card("alice"))
    assert decision is not None and decision.reason is Reason.RATE_LIMITED
    assert any(a.key == "reader_lockout" for a in rig.station.snapshot().alerts)
    assert any(e["data"].get("lockout") for e in rig.events if e["type"] == "card.tapped")


async def test_out_of_service_refuses_but_a_return_is_accepted(rig: Rig) -> None:
    await rig.station.on_card(card("alice"))
    await rig.station.set_mode(Mode.OUT_OF_SERVICE, by="test")
    bob = await rig.station.on_card(card("bob"))
    assert bob is not None and bob.reason is Reason.OUT_OF_SERVICE
    await rig.clock.advance(10)
    back = await rig.station.on_card(card("alice"))
    assert back is not None and back.reason is Reason.TRIP_ENDED
    assert rig.last("mode.changed")["data"]["to"] == "out_of_service"  # type: ignore[index]


async def test_plug_unreachable_with_load_cancels_the_trip(rig: Rig) -> None:
    bay = rig.station.bays["1"]
    bay.last = await rig.plugs["1"].read()
    rig.plugs["1"].relay_on = True
    bay.last = await rig.plugs["1"].read()  # the car draws power
    rig.plugs["1"].online = False
    decision = await rig.station.on_card(card("alice"))
    assert decision is not None and decision.reason is Reason.BAY_FAULT
    assert rig.releases["1"].pulses == 0
    assert rig.types()[-3:] == ["trip.started", "plug.fault", "trip.cancelled"]
    assert bay.vehicle == "ami-1"
    assert rig.station.store.open_trips() == []


async def test_release_actuator_failure_cancels_the_trip(rig: Rig) -> None:
    rig.releases["1"].fail = True
    decision = await rig.station.on_card(card("alice"))
    assert decision is not None and decision.reason is Reason.BAY_FAULT
    assert rig.last("trip.cancelled") is not None


async def test_vehicle_lock_signal_ends_the_trip(rig: Rig) -> None:
    await rig.station.on_card(card("alice"))
    await rig.clock.advance(15 * 60, step=60)
    decision = await rig.station.vehicle_locked("ami-1", source="lock.ami_1")
    assert decision is not None and decision.reason is Reason.TRIP_ENDED
    assert rig.last("trip.ended")["data"]["price_cents"] == 0  # type: ignore[index]
    assert await rig.station.vehicle_locked("ami-1", source="again") is None


async def test_remote_unlock_is_idempotent_per_request(rig: Rig) -> None:
    first = await rig.station.remote_unlock(request_id="req-1", vehicle="ami-1", reservation_id="r-alice")
    again = await rig.station.remote_unlock(request_id="req-1", vehicle="ami-1", reservation_id="r-alice")
    assert first.reason is Reason.RESERVATION and again == first
    assert rig.types().count("trip.started") == 1
    assert rig.releases["1"].pulses == 1
    other = await rig.station.remote_unlock(request_id="req-2", vehicle="ami-1", member_id="m-bob")
    assert other.reason is not Reason.RESERVATION


async def test_maintenance_release_needs_maintenance_mode(rig: Rig) -> None:
    refused = await rig.station.maintenance_release("1", by="maintainer")
    assert not refused.allowed and rig.releases["1"].pulses == 0
    await rig.station.set_mode(Mode.MAINTENANCE, by="maintainer")
    done = await rig.station.maintenance_release("1", by="maintainer")
    assert done.allowed and rig.releases["1"].pulses == 1
    assert [e["data"]["decision"] for e in rig.events if e["type"] == "maintenance.release"] == ["refused", "allowed"]


async def test_not_plugged_alert_after_return(rig: Rig) -> None:
    await rig.station.on_card(card("alice"))
    rig.plugs["1"].battery.plugged = False  # the member forgets to plug the car in
    await rig.clock.advance(60)
    await rig.station.on_card(card("alice"))
    task_bay = rig.station.bays["1"]
    import asyncio

    task = asyncio.create_task(task_bay.run())
    try:
        await rig.clock.advance(6 * 60, step=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "vehicle.not_plugged" in rig.types()
    assert any(a.key == "vehicle_not_plugged_1" for a in rig.station.snapshot().alerts)


async def test_unreachable_plug_is_a_fault_then_recovers(rig: Rig) -> None:
    import asyncio

    bay = rig.station.bays["1"]
    task = asyncio.create_task(bay.run())
    try:
        await rig.clock.advance(10, step=1)
        rig.plugs["1"].online = False
        await rig.clock.advance(20, step=1)
        assert not bay.reachable and rig.types().count("plug.fault") == 1
        assert rig.station.snapshot().state == "degraded"
        rig.plugs["1"].online = True
        await rig.clock.advance(10, step=1)
        assert bay.reachable and "plug.recovered" in rig.types()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_roster_expiry_refuses_releases(rig: Rig) -> None:
    await rig.clock.advance(15 * 24 * 3600, step=24 * 3600)
    decision = await rig.station.on_card(card("bob"))
    assert decision is not None and decision.reason is Reason.ROSTER_EXPIRED
    assert any(a.key == "roster_expiring" for a in rig.station.snapshot().alerts)


async def test_restart_keeps_open_trips_and_bay_state(tmp_path: Path) -> None:
    from station.demo import reservations_document, roster_document

    rig = make_rig(tmp_path / "d")
    await rig.station.apply_document(roster_document(rig.clock.now()), expected_type="roster")
    await rig.station.apply_document(reservations_document(rig.clock.now()), expected_type="reservations")
    await rig.station.on_card(card("alice"))
    rig.station.store.close()
    rig.station.roster.close()
    again = make_rig(tmp_path / "d", rig.clock, boot="boot-2")  # a reboot
    try:
        assert again.station.bays["1"].vehicle is None
        assert [t.member_id for t in again.station.store.open_trips()] == ["m-alice"]
        await again.clock.advance(40 * 60, step=60)
        decision = await again.station.on_card(card("alice"))
        assert decision is not None and decision.reason is Reason.TRIP_ENDED
        assert again.last("trip.ended")["data"]["duration_source"] in ("wall", "wall_untrusted")  # type: ignore[index]
        assert again.last("trip.ended")["data"]["price_cents"] == 50  # type: ignore[index]
    finally:
        again.station.store.close()
        again.station.roster.close()


async def test_snapshot_has_what_status_needs(rig: Rig) -> None:
    snap = rig.station.snapshot()
    assert snap.roster is not None and snap.roster.version == 1 and snap.roster.size == 5
    assert snap.reservations_version == 1
    assert snap.journal_last_seq == len(rig.events) + 2 or snap.journal_last_seq >= 2
    assert [b.vehicle for b in snap.bays] == ["ami-1", "ami-2"]
    assert snap.bays[0].energy_kwh is None  # never read yet: unknown, not 0
    _ = timedelta
