"""End to end over real sockets: two real stations and the central server.

"hede" (ami-1, ami-2) and "bazouges" (ami-3) are each a real
:class:`~station.service.Station` built by ``build_station`` on simulated
devices and run by ``run_station``, so each serves the real sync API
(aiohttp on 127.0.0.1, an ephemeral port, a bearer token). The test plays the
central server over HTTP with an aiohttp client: it pushes signed documents,
watches taps turn into trips, pulls and acknowledges both journals, joins the
two halves of a one-way trip, attacks the document endpoints, drives the
clock trust with ``Date`` headers, unlocks remotely, and runs the operator CLI.

Both stations share one :class:`~station.clock.ManualClock` (they live in the
same real time); nothing here sleeps on the wall clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from integrations.api.auth import hash_token
from integrations.simulated import SimulatedPlug, SimulatedReader, SimulatedRelease
from provisioning import operator
from station.bootstrap import Devices, build_station, run_station
from station.clock import ManualClock
from station.config import Config, parse_config
from station.credentials import card_ref
from station.demo import DEMO_CARD_KEY, DEMO_KEY_ID, demo_config, demo_key
from station.documents import sign
from station.model import CardPresented, Decision, Reason
from station.service import Station

T0 = datetime(2026, 6, 1, 7, 0, tzinfo=UTC)
TOKEN = "central-e2e-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}
CENTRAL = demo_key("central")

# Card UIDs (hex); frank is a phone user without a card.
UIDS: dict[str, str | None] = {"alice": "0A0B0C0D", "bob": "0B0B0B0B", "carol": "0C0C0C0C", "erin": "0E0E0E0E",
                               "frank": None}
EVENT_KEYS = {"seq", "id", "type", "at", "wall_trusted", "boot_id", "station", "bay", "vehicle", "member_id", "trip_id",
              "reservation_id", "data"}


# -- the central server's documents ------------------------------------------------------


def rfc(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def member(name: str, now: datetime, *, ref: str | None = None) -> dict[str, Any]:
    uid = UIDS.get(name)
    if ref is None and uid is not None:
        ref = card_ref(DEMO_CARD_KEY.encode(), bytes.fromhex(uid))
    cards = [] if ref is None else [{"ref": ref, "kind": "uid", "serial": 1}]
    return {"member_id": f"m-{name}", "status": "active", "valid_from": rfc(now - timedelta(days=30)),
            "valid_until": rfc(now + timedelta(days=365)), "cards": cards}


def roster_doc(now: datetime, version: int, *, members: list[dict[str, Any]] | None = None, kind: str = "full",
               base_version: int | None = None, scope: tuple[str, ...] = ("*",),
               expires_in: timedelta = timedelta(days=14), key: Any = CENTRAL, key_id: str = DEMO_KEY_ID) -> bytes:
    doc: dict[str, Any] = {
        "type": "roster", "kind": kind, "version": version, "station_scope": list(scope), "issued_at": rfc(now),
        "expires_at": rfc(now + expires_in),
        "members": members if members is not None else [member(n, now) for n in UIDS],
    }
    if base_version is not None:
        doc["base_version"] = base_version
    return sign(doc, key, key_id)


def booking(rid: str, name: str, vehicle: str, start: datetime, end: datetime, pickup: str,
            dropoff: str) -> dict[str, Any]:
    return {"reservation_id": rid, "member_id": f"m-{name}", "vehicle": vehicle, "start": rfc(start), "end": rfc(end),
            "pickup": pickup, "dropoff": dropoff, "status": "confirmed"}


def reservations_doc(now: datetime, version: int, items: list[dict[str, Any]], *, scope: tuple[str, ...],
                     kind: str = "full", base_version: int | None = None, extra: dict[str, Any] | None = None) -> bytes:
    doc: dict[str, Any] = {"type": "reservations", "kind": kind, "version": version, "station_scope": list(scope),
                           "issued_at": rfc(now), "expires_at": rfc(now + timedelta(days=2)), "reservations": items,
                           **(extra or {})}
    if base_version is not None:
        doc["base_version"] = base_version
    return sign(doc, CENTRAL, DEMO_KEY_ID)


# The day: a round trip at hede, and two one-way trips that swap ami-2 and ami-3.
R_ALICE = booking("r-alice", "alice", "ami-1", T0 - timedelta(minutes=5), T0 + timedelta(hours=2), "hede", "hede")
R_CAROL = booking("r-carol", "carol", "ami-2", T0, T0 + timedelta(hours=1), "hede", "bazouges")
R_ERIN = booking("r-erin", "erin", "ami-3", T0, T0 + timedelta(hours=1), "bazouges", "hede")


def http_date(dt: datetime) -> str:
    return format_datetime(dt.astimezone(UTC), usegmt=True)


# -- stations -----------------------------------------------------------------------------


LAPTOP_TOKEN = "an-operators-laptop"


def station_config(data_dir: Path, station_id: str, vehicles: list[str], *, trust: str = "always") -> Config:
    data = demo_config(data_dir, plug={"transport": "simulated", "poll_interval_s": 5.0}).model_dump(mode="json")
    data["station"].update(id=station_id, name=station_id.title(), trust_system_clock=trust)
    data["bays"] = [{"id": str(i), "vehicle": v, "plug": {"transport": "simulated", "poll_interval_s": 5.0}}
                    for i, v in enumerate(vehicles, 1)]
    data["api"] = {"listen": "127.0.0.1", "port": 0, "tokens": [
        {"name": "central", "sha256": hash_token(TOKEN)},
        {"name": "laptop", "sha256": hash_token(LAPTOP_TOKEN), "trust_date": False},  # an operator's laptop
    ]}
    return parse_config(data, source=f"<{station_id}>")


@dataclass
class Node:
    """One station process: its devices survive a restart, its Station does not."""

    config: Config
    clock: ManualClock
    plugs: dict[str, SimulatedPlug]
    releases: dict[str, SimulatedRelease]
    reader: SimulatedReader = field(default_factory=SimulatedReader)
    station: Station | None = None
    task: asyncio.Task[None] | None = None
    url: str = ""
    boots: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.config.station.id

    @property
    def s(self) -> Station:
        assert self.station is not None
        return self.station

    async def start(self) -> None:
        self.boots += 1
        self.station = build_station(self.config, clock=self.clock, boot=f"{self.id}-boot-{self.boots}",
                                     devices=Devices(plugs=dict(self.plugs), releases=dict(self.releases),
                                                     reader=self.reader),
                                     ntp=lambda: False)
        self.station.subscribe(self.events.append)
        self.task = asyncio.create_task(run_station(self.station, self.config), name=f"station-{self.id}")
        for _ in range(100):
            if self.station.api_server is not None:
                break
            await asyncio.sleep(0)
        assert self.station.api_server is not None, "run_station did not start the API"
        port = await asyncio.wait_for(self.station.api_server.wait_ready(), 5)
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.task = None

    async def tap(self, name: str) -> Decision | None:
        uid = UIDS[name]
        assert uid is not None
        return await self.s.on_card(CardPresented(uid=bytes.fromhex(uid)))

    async def tap_reader(self, name: str) -> dict[str, Any]:
        """Through the simulated reader and the station's reader service."""
        uid = UIDS[name]
        assert uid is not None
        seen = len(self.events)
        self.reader.present(bytes.fromhex(uid))
        for _ in range(500):
            tapped = [e for e in self.events[seen:] if e["type"] == "card.tapped"]
            if tapped:
                return tapped[0]
            await asyncio.sleep(0.002)
        raise AssertionError(f"{self.id}: the reader's tap of {name} was never journaled")

    def last(self, type_: str) -> dict[str, Any]:
        return next(e for e in reversed(self.events) if e["type"] == type_)


Factory = Callable[..., Awaitable[Node]]


@pytest_asyncio.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[Factory]:
    nodes: list[Node] = []

    async def make(station_id: str, vehicles: list[str], clock: ManualClock, *, trust: str = "always") -> Node:
        config = station_config(tmp_path / station_id, station_id, vehicles, trust=trust)
        node = Node(config=config, clock=clock, plugs={b.id: SimulatedPlug(clock) for b in config.bays},
                    releases={b.id: SimulatedRelease() for b in config.bays})
        await node.start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.stop()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


# -- the central server's requests ----------------------------------------------------------


async def call(http: aiohttp.ClientSession, method: str, url: str, *, headers: dict[str, str] | None = None,
               **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, url, headers=AUTH if headers is None else headers, **kwargs) as resp:
        text = await resp.text()
        assert resp.content_type == "application/json", (resp.status, text[:200])
        return resp.status, json.loads(text)


async def raw_put(node: Node, path: str, head: dict[str, str], pieces: Iterable[bytes], *,
                  chunked: bool = False) -> tuple[int, Any]:
    """A client on a bare socket that sends (part of) a body, reads the answer
    and resets the connection, as an abusive client would: aiohttp's client
    would keep sending a refused body (see test_refused_upload_does_not_hold_the_station)."""
    port = int(node.url.rsplit(":", 1)[1])
    before = asyncio.all_tasks()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"PUT {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in head.items())]
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        with contextlib.suppress(ConnectionError):
            for piece in pieces:
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        headers: dict[str, str] = {}
        while (line := await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
        assert headers.get("content-type", "").startswith("application/json"), headers
        return int(status_line.split()[1]), json.loads(body)
    finally:
        writer.transport.abort()
        # aiohttp keeps a handler reading ("lingering") a refused body for 10 s even after the
        # reset: end it here so that it does not outlive the test (the station's own server lingers 1 s at most).
        await asyncio.sleep(0.01)
        mine = [t for t in asyncio.all_tasks() - before if t.get_coro().__qualname__ == "RequestHandler.start"]
        for task in mine:
            task.cancel()
        await asyncio.gather(*mine, return_exceptions=True)


async def put(http: aiohttp.ClientSession, node: Node, what: str, body: bytes,
              headers: dict[str, str] | None = None) -> tuple[int, Any]:
    return await call(http, "PUT", f"{node.url}/v1/{what}", data=body, headers={**(AUTH if headers is None else headers),
                                                                                  **JSON})


async def status(http: aiohttp.ClientSession, node: Node, headers: dict[str, str] | None = None) -> dict[str, Any]:
    code, body = await call(http, "GET", f"{node.url}/v1/status", headers=headers)
    assert code == 200, body
    return body


async def pull(http: aiohttp.ClientSession, node: Node, *, after: int = 0, limit: int = 3) -> list[dict[str, Any]]:
    """Every event after ``after``, page by page, as the central server does."""
    events: list[dict[str, Any]] = []
    while True:
        code, page = await call(http, "GET", f"{node.url}/v1/journal", params={"after": str(after), "limit": str(limit)})
        assert code == 200, page
        assert len(page["events"]) <= limit
        if not page["events"]:
            assert page["next_after"] == after
            break
        assert page["next_after"] == page["events"][-1]["seq"]
        events += page["events"]
        after = page["next_after"]
        if after >= page["last_seq"]:
            break
    return events


async def ack(http: aiohttp.ClientSession, node: Node, up_to: int) -> int:
    code, body = await call(http, "POST", f"{node.url}/v1/journal/ack", json={"up_to": up_to})
    assert code == 200, body
    return body["acknowledged"]


def contiguous(events: list[dict[str, Any]]) -> list[int]:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"gaps or disorder in {seqs}"
    return seqs


# -- 1-3: two stations, a round trip and a one-way, journals joined -----------------------------


async def test_round_trip_and_one_way_between_two_stations(make_node: Factory, http: aiohttp.ClientSession) -> None:
    clock = ManualClock(T0)
    hede = await make_node("hede", ["ami-1", "ami-2"], clock)
    baz = await make_node("bazouges", ["ami-3"], clock)

    # The central server pushes one roster for the whole deployment and each
    # station's reservations: its own cars and the cars arriving there.
    for node in (hede, baz):
        code, body = await put(http, node, "roster", roster_doc(T0, 1))
        assert (code, body["applied"], body["version"]) == (200, True, 1), body
    code, body = await put(http, hede, "reservations", reservations_doc(T0, 1, [R_ALICE, R_CAROL, R_ERIN], scope=("hede",)))
    assert (code, body["applied"]) == (200, True), body
    code, body = await put(http, baz, "reservations", reservations_doc(T0, 1, [R_CAROL, R_ERIN], scope=("bazouges",)))
    assert (code, body["applied"]) == (200, True), body
    for node in (hede, baz):
        st = await status(http, node)
        assert st["station"] == node.id and st["roster"]["version"] == 1 and st["roster"]["size"] == len(UIDS)
        assert st["reservations"]["version"] == 1 and st["clock_trusted"] is True

    # 07:00 erin takes ami-3 at bazouges (through the reader), one way to hede: it frees bazouges' bay.
    tapped = await baz.tap_reader("erin")
    assert tapped["data"]["decision"] == "allowed" and tapped["data"]["reason"] == "reservation"
    started = baz.last("trip.started")
    assert (started["vehicle"], started["reservation_id"], started["data"]["kind"], started["data"]["end_station"]) == (
        "ami-3", "r-erin", "one_way", "hede")
    assert baz.releases["1"].pulses == 1 and baz.plugs["1"].relay_on is False

    # 07:00 alice takes ami-1 at hede: a round trip.
    alice = await hede.tap("alice")
    assert alice is not None and alice.reason is Reason.RESERVATION and (alice.bay, alice.vehicle) == ("1", "ami-1")
    trip = hede.last("trip.started")
    assert trip["data"].items() >= {"kind": "round_trip", "half": "whole", "start_station": "hede", "end_station": "hede"}.items()

    # 07:01 carol takes ami-2 at hede, one way to bazouges.
    await clock.advance(60, step=5)
    carol = await hede.tap("carol")
    assert carol is not None and carol.reason is Reason.RESERVATION and (carol.bay, carol.vehicle) == ("2", "ami-2")
    departure = hede.last("trip.started")
    assert departure["data"]["kind"] == "one_way" and departure["data"]["half"] == "departure"
    assert (departure["data"]["start_station"], departure["data"]["end_station"]) == ("hede", "bazouges")
    assert hede.releases["1"].pulses == hede.releases["2"].pulses == 1
    bays = {b["bay"]: b for b in (await status(http, hede))["bays"]}
    assert bays["1"]["vehicle"] is None and bays["2"]["vehicle"] is None
    # The round trip is open at hede; the one-way departure is hede's no more (it ends at bazouges).
    assert (bays["1"]["open_trip_id"], bays["2"]["open_trip_id"]) == (alice.trip_id, None)

    # 07:45 carol arrives at bazouges; erin arrives at hede (in ami-2's bay).
    await clock.advance(44 * 60, step=30)
    carol_in = await baz.tap("carol")
    assert carol_in is not None and carol_in.reason is Reason.TRIP_ENDED
    assert (carol_in.vehicle, carol_in.bay, carol_in.reservation_id) == ("ami-2", "1", "r-carol")
    arrival = baz.last("trip.ended")
    assert arrival["data"]["kind"] == "one_way" and arrival["data"]["half"] == "arrival"
    assert arrival["data"]["price_cents"] is None  # priced by the central server once both halves are joined
    erin_in = await hede.tap("erin")  # parks in the first free bay: ami-1's
    assert erin_in is not None and erin_in.reason is Reason.TRIP_ENDED and (erin_in.vehicle, erin_in.bay) == ("ami-3", "1")
    await clock.advance(10, step=5)  # the bays poll: the returned cars draw power again
    assert baz.plugs["1"].relay_on is True and hede.plugs["1"].relay_on is True

    # 08:10 alice brings ami-1 back: 70 minutes = 30 free + 2 started half hours = 1.00 EUR.
    await clock.advance(70 * 60 - clock.monotonic(), step=30)
    back = await hede.tap("alice")  # her bay is taken by ami-3: she parks in the free one
    assert back is not None and back.reason is Reason.TRIP_ENDED and back.trip_id == alice.trip_id
    assert (back.bay, back.vehicle) == ("2", "ami-1")
    ended = hede.last("trip.ended")
    assert ended["trip_id"] == alice.trip_id
    assert ended["data"].items() >= {"kind": "round_trip", "half": "whole", "start_station": "hede", "end_station": "hede",
                                  "price_cents": 100, "currency": "EUR", "duration_s": 4200.0}.items()

    # The central server pulls both journals, three events a page.
    journals = {node.id: await pull(http, node, limit=3) for node in (hede, baz)}
    for node in (hede, baz):
        events = journals[node.id]
        seqs = contiguous(events)
        assert seqs[0] == 1 and seqs[-1] == (await status(http, node))["journal"]["last_seq"] == node.s.store.last_seq
        assert [e["id"] for e in events] == [e["id"] for e in node.events[: len(events)]]
        assert len({e["id"] for e in events}) == len(events)
        for e in events:
            assert EVENT_KEYS <= set(e), set(EVENT_KEYS) - set(e)
            assert e["station"] == node.id and e["boot_id"] == f"{node.id}-boot-1" and e["wall_trusted"] is True
        assert {"roster.applied", "reservations.applied", "card.tapped", "trip.started", "trip.ended",
                "charge.started"} <= {e["type"] for e in events}

    # It joins the one-way halves per vehicle and reservation.
    def halves(events: list[dict[str, Any]], type_: str, half: str) -> dict[tuple[str, str], dict[str, Any]]:
        return {(e["vehicle"], e["reservation_id"]): e for e in events
                if e["type"] == type_ and e["data"].get("half") == half}

    departures = halves(journals["hede"], "trip.started", "departure") | halves(journals["bazouges"], "trip.started", "departure")
    arrivals = halves(journals["hede"], "trip.ended", "arrival") | halves(journals["bazouges"], "trip.ended", "arrival")
    assert set(departures) == set(arrivals) == {("ami-2", "r-carol"), ("ami-3", "r-erin")}
    for key, dep in departures.items():
        arr = arrivals[key]
        assert dep["member_id"] == arr["member_id"] and dep["member_id"] is not None
        assert dep["data"]["start_station"] == arr["data"]["start_station"] == dep["station"]
        assert dep["data"]["end_station"] == arr["data"]["end_station"] == arr["station"] != dep["station"]
        assert datetime.fromisoformat(arr["at"]) > datetime.fromisoformat(dep["at"])
    carol_dep, carol_arr = departures[("ami-2", "r-carol")], arrivals[("ami-2", "r-carol")]
    assert (carol_dep["station"], carol_arr["station"], carol_dep["member_id"]) == ("hede", "bazouges", "m-carol")
    assert (datetime.fromisoformat(carol_arr["at"]) - datetime.fromisoformat(carol_dep["at"])) == timedelta(minutes=44)
    # The round trip is whole at hede: no half to join.
    whole = [e for e in journals["hede"] if e["type"] == "trip.ended" and e["data"]["half"] == "whole"]
    assert [e["reservation_id"] for e in whole] == ["r-alice"]

    # Acknowledge: hede all but its last three events, bazouges everything.
    hede_last, baz_last = journals["hede"][-1]["seq"], journals["bazouges"][-1]["seq"]
    hede_acked = hede_last - 3
    assert await ack(http, hede, hede_acked) == hede_acked
    assert await ack(http, baz, baz_last) == baz_last
    assert await ack(http, hede, 1) == hede_acked  # an older ack never goes back
    code, body = await call(http, "POST", f"{hede.url}/v1/journal/ack", json={"up_to": hede_last + 1})
    assert code == 422, body  # nobody acknowledges what does not exist yet
    st = await status(http, hede)
    assert (st["journal"]["acked_seq"], st["journal"]["backlog"]) == (hede_acked, 3)

    # Within retention nothing goes, acknowledged or not.
    for node in (hede, baz):
        await node.s.sync_now()
    assert [e["seq"] for e in await pull(http, hede, limit=50)] == list(range(1, hede_last + 1))

    # 31 days later (NTP steps the wall clock): acknowledged events are pruned, the others stay.
    clock.set_wall(clock.now() + timedelta(days=31))
    for node in (hede, baz):
        await node.s.sync_now()
    kept = await pull(http, hede, limit=3)
    assert [e["seq"] for e in kept] == list(range(hede_acked + 1, hede_last + 1))
    assert [e["id"] for e in kept] == [e["id"] for e in journals["hede"][-3:]]
    kept_baz = await pull(http, baz, limit=3)
    assert all(e["seq"] > baz_last - 1 for e in kept_baz)  # at most the last one (it carries the seq over a restart)
    assert (await status(http, baz))["journal"]["last_seq"] == baz_last

    # seq keeps counting: after a fresh roster, and across a restart of bazouges.
    later = clock.now()
    for node, last in ((hede, hede_last), (baz, baz_last)):
        code, body = await put(http, node, "roster", roster_doc(later, 2))
        assert code == 200 and body["applied"] is True, body
        fresh = await pull(http, node, after=last)
        assert fresh[0]["seq"] == last + 1 and fresh[0]["type"] == "roster.applied"
    await baz.stop()
    await baz.start()
    st = await status(http, baz)
    assert st["journal"]["last_seq"] >= baz_last + 2  # roster.applied, station.stopped
    code, body = await put(http, baz, "reservations", reservations_doc(later, 2, [], scope=("bazouges",)))
    assert code == 200, body
    after_restart = await pull(http, baz, after=baz_last)
    contiguous(after_restart)
    assert after_restart[0]["seq"] == baz_last + 1 and after_restart[-1]["type"] == "reservations.applied"
    assert after_restart[-1]["boot_id"] == "bazouges-boot-2"


# -- 4: attacks and bad input against the real station -------------------------------------------

ROGUE = demo_key("not the central server")


def _tampered(now: datetime) -> bytes:
    envelope = json.loads(roster_doc(now, 6))
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["members"][0]["status"] = "active"
    payload["members"].append(member("mallory", now, ref="f" * 32))
    envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    return json.dumps(envelope).encode()


def _duplicate_card(now: datetime) -> bytes:
    ref = card_ref(DEMO_CARD_KEY.encode(), bytes.fromhex(UIDS["alice"] or ""))
    return roster_doc(now, 6, members=[member(n, now) for n in UIDS] + [member("mallory", now, ref=ref)])


def _bad_ref(now: datetime) -> bytes:
    return roster_doc(now, 6, members=[member("alice", now, ref="NOT-HEX-" * 4)])


Attack = tuple[str, Callable[[datetime], bytes], dict[str, str], int, str]

ATTACKS: dict[str, Attack] = {
    "no_token": ("roster", lambda now: roster_doc(now, 6), {}, 401, "unauthorized"),
    "wrong_token": ("roster", lambda now: roster_doc(now, 6), {"Authorization": "Bearer guess"}, 401, "unauthorized"),
    "basic_auth": ("roster", lambda now: roster_doc(now, 6), {"Authorization": f"Basic {TOKEN}"}, 401, "unauthorized"),
    "bad_signature": ("roster", _tampered, AUTH, 422, "bad_signature"),
    "signed_by_another_key": ("roster", lambda now: roster_doc(now, 6, key=ROGUE), AUTH, 422, "bad_signature"),
    "unknown_key": ("roster", lambda now: roster_doc(now, 6, key=ROGUE, key_id="rogue-1"), AUTH, 422, "unknown_key"),
    "lower_version": ("roster", lambda now: roster_doc(now, 4), AUTH, 422, "lower_version"),
    "wrong_scope": ("roster", lambda now: roster_doc(now, 6, scope=("bazouges",)), AUTH, 422, "wrong_scope"),
    "expired": ("roster", lambda now: roster_doc(now - timedelta(days=20), 6), AUTH, 422, "expired"),
    "duplicate_card": ("roster", _duplicate_card, AUTH, 422, "duplicate_card"),
    "invalid_entry": ("roster", _bad_ref, AUTH, 422, "invalid_payload"),
    "delta_on_wrong_base": ("roster", lambda now: roster_doc(now, 7, kind="delta", base_version=3), AUTH, 409,
                            "base_mismatch"),
    "reservations_as_roster": ("roster", lambda now: reservations_doc(now, 9, [], scope=("*",)), AUTH, 422,
                               "wrong_type"),
    "truncated_json": ("roster", lambda now: roster_doc(now, 6)[:-7], AUTH, 400, "bad_json"),
    "not_an_envelope": ("roster", lambda now: b'{"members": []}', AUTH, 422, "invalid_envelope"),
    "twenty_megabytes": ("roster", lambda now: b'{"key_id": "' + b"x" * (20 << 20) + b'"}', AUTH, 413,
                         "body_too_large"),  # sent on a bare socket, see raw_put
    "reservations_delta_on_wrong_base": (
        "reservations", lambda now: reservations_doc(now, 5, [], scope=("hede",), kind="delta", base_version=3), AUTH,
        409, "base_mismatch"),
    "reservations_wrong_scope": ("reservations", lambda now: reservations_doc(now, 5, [R_CAROL], scope=("bazouges",)),
                                 AUTH, 422, "wrong_scope"),
    "reservations_duplicate": ("reservations", lambda now: reservations_doc(now, 5, [R_CAROL, R_CAROL], scope=("hede",)),
                               AUTH, 422, "duplicate_reservation"),
}


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm", "-journal")))


@pytest.mark.parametrize("case", ATTACKS)
async def test_bad_documents_change_nothing(case: str, make_node: Factory, http: aiohttp.ClientSession) -> None:
    clock = ManualClock(T0)
    hede = await make_node("hede", ["ami-1", "ami-2"], clock)
    code, body = await put(http, hede, "roster", roster_doc(T0, 5))
    assert code == 200 and body["applied"], body
    code, body = await put(http, hede, "reservations", reservations_doc(T0, 2, [R_ALICE, R_CAROL], scope=("hede",)))
    assert code == 200 and body["applied"], body
    before = await status(http, hede)
    files = _files(hede.config.data_dir)
    pointer = (hede.config.data_dir / "roster.current").read_text()

    what, build, headers, want_status, want_error = ATTACKS[case]
    data = build(clock.now())
    if len(data) > hede.config.api.max_body_bytes:
        code, body = await raw_put(hede, f"/v1/{what}", {**headers, **JSON, "Content-Length": str(len(data))},
                                   [data[: 1 << 20]])
    else:
        code, body = await put(http, hede, what, data, headers={**headers})
    assert (code, body.get("error")) == (want_status, want_error), body
    assert isinstance(body.get("detail"), str) and body["detail"]

    after = await status(http, hede)
    assert after["roster"] == before["roster"] and after["roster"]["version"] == 5
    assert after["reservations"] == before["reservations"]
    assert after["journal"]["last_seq"] == before["journal"]["last_seq"] == hede.s.store.last_seq
    assert _files(hede.config.data_dir) == files
    assert (hede.config.data_dir / "roster.current").read_text() == pointer
    # The old roster still answers: a known member takes her reserved car; mallory is nobody.
    decision = await hede.tap("alice")
    assert decision is not None and decision.reason is Reason.RESERVATION, decision
    assert hede.s.roster.card("f" * 32) is None


async def test_chunked_twenty_megabytes_is_413(make_node: Factory, http: aiohttp.ClientSession) -> None:
    hede = await make_node("hede", ["ami-1"], ManualClock(T0))
    last = hede.s.store.last_seq
    # No Content-Length: the limit is found while reading (9 of the 20 MiB are sent before the answer is read).
    code, body = await raw_put(hede, "/v1/roster", {**AUTH, **JSON}, (b" " * (1 << 20) for _ in range(9)), chunked=True)
    assert (code, body["error"]) == (413, "body_too_large")
    assert hede.s.store.last_seq == last and hede.s.roster.info is None
    assert (await status(http, hede))["roster"] is None


async def test_refused_upload_does_not_hold_the_station(make_node: Factory, http: aiohttp.ClientSession) -> None:
    hede = await make_node("hede", ["ami-1"], ManualClock(T0))
    code, body = await put(http, hede, "roster", b"x" * (20 << 20))  # an ordinary client sends it all
    assert (code, body["error"]) == (413, "body_too_large")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await hede.stop()
    took = loop.time() - started
    lingering = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "RequestHandler.start"]
    for task in lingering:  # clean up for the other tests, whatever the outcome
        task.cancel()
    await asyncio.gather(*lingering, return_exceptions=True)
    assert took < 2.0, f"the station took {took:.1f} s to stop"
    assert not lingering


async def test_reservations_in_parts_are_all_applied(make_node: Factory, http: aiohttp.ClientSession) -> None:
    """DESIGN §5: a full document larger than the limit is sent in parts; for
    reservations "same rules". Both parts must end up in force."""
    hede = await make_node("hede", ["ami-1", "ami-2"], ManualClock(T0))
    assert (await put(http, hede, "roster", roster_doc(T0, 1)))[0] == 200
    part1 = reservations_doc(T0, 3, [R_ALICE], scope=("hede",), extra={"part": 1, "parts": 2})
    part2 = reservations_doc(T0, 3, [R_CAROL], scope=("hede",), extra={"part": 2, "parts": 2})
    code, body = await put(http, hede, "reservations", part1)
    assert code == 200, body
    code, body = await put(http, hede, "reservations", part2)
    assert code == 200 and body["applied"] is True, body
    assert hede.s.store.reservation("r-alice") is not None
    assert hede.s.store.reservation("r-carol") is not None, "part 2 of the reservations was dropped"


# -- 5: clock trust --------------------------------------------------------------------------------


async def test_clock_trust_comes_only_from_an_authenticated_date(make_node: Factory, http: aiohttp.ClientSession) -> None:
    clock = ManualClock(T0)
    hede = await make_node("hede", ["ami-1", "ami-2"], clock, trust="never")
    # Documents are accepted while the clock is untrusted (aiohttp's client sends no Date).
    assert (await put(http, hede, "roster", roster_doc(T0, 1)))[0] == 200
    assert (await put(http, hede, "reservations", reservations_doc(T0, 1, [R_ALICE], scope=("hede",))))[0] == 200
    assert (await status(http, hede))["clock_trusted"] is False

    refused = await hede.tap("alice")
    assert refused is not None and refused.reason is Reason.CLOCK_UNTRUSTED
    event = hede.last("card.tapped")
    assert (event["data"]["reason"], event["wall_trusted"]) == ("clock_untrusted", False)
    assert hede.releases["1"].pulses == 0

    # A Date without a valid token, or on the public route, is ignored.
    far = http_date(T0 + timedelta(days=400))
    for headers in ({"Date": far}, {"Date": far, "Authorization": "Bearer wrong"}):
        code, body = await call(http, "GET", f"{hede.url}/v1/status", headers=headers)
        assert (code, body["error"]) == (401, "unauthorized")
    code, _ = await call(http, "GET", f"{hede.url}/healthz", headers={"Date": far})
    assert code == 200
    # An operator's laptop (a token with trust_date: false) is authenticated, but its Date is not taken.
    laptop = {"Authorization": f"Bearer {LAPTOP_TOKEN}", "Date": far}
    code, _ = await call(http, "GET", f"{hede.url}/v1/status", headers=laptop)
    assert code == 200
    st = await status(http, hede)
    assert st["clock_trusted"] is False and hede.s.clock.now() == clock.now()

    # The central server's authenticated request carries a Date 10 minutes ahead of the station.
    await clock.advance(5, step=5)  # past the reader's debounce
    central_now = clock.now() + timedelta(minutes=10)
    st = await status(http, hede, headers={**AUTH, "Date": http_date(central_now)})
    assert st["clock_trusted"] is True
    assert abs(hede.s.clock.now() - central_now) < timedelta(seconds=1)  # the station keeps the offset

    allowed = await hede.tap("alice")
    assert allowed is not None and allowed.reason is Reason.RESERVATION
    started = hede.last("trip.started")
    assert started["wall_trusted"] is True and hede.last("card.tapped")["wall_trusted"] is True
    assert abs(datetime.fromisoformat(started["at"]) - central_now) < timedelta(seconds=1)
    assert hede.releases["1"].pulses == 1


# -- 6: remote unlock ---------------------------------------------------------------------------------


async def test_remote_unlock_is_idempotent_per_request_id(make_node: Factory, http: aiohttp.ClientSession) -> None:
    clock = ManualClock(T0)
    hede = await make_node("hede", ["ami-1", "ami-2"], clock)
    frank = booking("r-frank", "frank", "ami-2", T0 - timedelta(minutes=10), T0 + timedelta(hours=1), "hede", "hede")
    assert (await put(http, hede, "roster", roster_doc(T0, 1)))[0] == 200
    assert (await put(http, hede, "reservations", reservations_doc(T0, 1, [R_ALICE, frank], scope=("hede",))))[0] == 200

    command = {"request_id": "phone-frank-1", "reservation_id": "r-frank", "vehicle": "ami-2"}
    url = f"{hede.url}/v1/commands/unlock"
    code, first = await call(http, "POST", url, json=command)
    assert code == 200, first
    assert first.items() >= {"request_id": "phone-frank-1", "allowed": True, "releases": True, "reason": "reservation",
                          "member_id": "m-frank", "reservation_id": "r-frank", "bay": "2", "vehicle": "ami-2"}.items()
    assert first["trip_id"]
    code, again = await call(http, "POST", url, json=command)
    assert (code, again) == (200, first)
    code, body = await call(http, "POST", url, json={**command, "vehicle": "ami-1"})
    assert (code, body["error"]) == (422, "request_id_reused")

    def trips() -> list[dict[str, Any]]:
        return [e for e in hede.events if e["type"] == "trip.started"]

    assert [t["trip_id"] for t in trips()] == [first["trip_id"]]
    assert hede.releases["2"].pulses == 1
    assert trips()[0]["data"]["source"] == "remote"
    assert [e["data"]["request_id"] for e in hede.events if e["type"] == "unlock.requested"] == ["phone-frank-1"]

    # A retry after a restart of the station gets the same answer from the journal's side, not a second car.
    await hede.stop()
    await hede.start()
    url = f"{hede.url}/v1/commands/unlock"  # a new port
    code, after_restart = await call(http, "POST", url, json=command)
    assert (code, after_restart) == (200, first)
    assert len(trips()) == 1 and hede.releases["2"].pulses == 1

    # A phone user without a booking of the car (and the car reserved soon by alice) gets a reason, not a car.
    code, bob = await call(http, "POST", url, json={"request_id": "phone-bob-1", "member_id": "m-bob", "vehicle": "ami-1"})
    assert code == 200 and bob["allowed"] is False and bob["reason"] in {"no_vehicle", "no_reservation"}, bob
    assert hede.releases["1"].pulses == 0

    # Without a token, nothing at all.
    code, body = await call(http, "POST", url, json={**command, "request_id": "phone-frank-3"}, headers={})
    assert code == 401 and len(trips()) == 1


async def test_a_second_remote_unlock_does_not_end_the_trip(make_node: Factory, http: aiohttp.ClientSession) -> None:
    """The phone app retries with a fresh request id, or the member presses
    "unlock" again while driving: the car is not back, so the trip must stay
    open (DESIGN §2: a trip ends on a tap at a station or the car's lock)."""
    clock = ManualClock(T0)
    hede = await make_node("hede", ["ami-1", "ami-2"], clock)
    frank = booking("r-frank", "frank", "ami-2", T0 - timedelta(minutes=10), T0 + timedelta(hours=1), "hede", "hede")
    assert (await put(http, hede, "roster", roster_doc(T0, 1)))[0] == 200
    assert (await put(http, hede, "reservations", reservations_doc(T0, 1, [frank], scope=("hede",))))[0] == 200
    url = f"{hede.url}/v1/commands/unlock"
    command = {"request_id": "phone-frank-1", "reservation_id": "r-frank", "vehicle": "ami-2"}
    code, first = await call(http, "POST", url, json=command)
    assert code == 200 and first["releases"] is True, first
    await clock.advance(120, step=5)  # two minutes later, on the road

    code, again = await call(http, "POST", url, json={**command, "request_id": "phone-frank-2"})
    assert code == 200, again
    st = await status(http, hede)
    bay2 = next(b for b in st["bays"] if b["bay"] == "2")
    ended = [e for e in hede.events if e["type"] == "trip.ended"]
    assert (again["allowed"], again["reason"]) == (False, "vehicle_out"), again
    assert ended == [] and bay2["vehicle"] is None and bay2["open_trip_id"] == first["trip_id"]


# -- 7: the operator CLI ---------------------------------------------------------------------------------


async def test_operator_cli_against_the_real_station(make_node: Factory, http: aiohttp.ClientSession, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BORNE_URL", raising=False)
    monkeypatch.delenv("BORNE_TOKEN", raising=False)
    clock = ManualClock(T0)
    hede = await make_node("hede", ["ami-1", "ami-2"], clock)

    async def cli(*argv: str, token: str = TOKEN) -> int:
        return await asyncio.to_thread(operator.main, [*argv, "--url", hede.url, "--token", token])

    roster_file = tmp_path / "roster.json"
    roster_file.write_bytes(roster_doc(T0, 1))
    reservations_file = tmp_path / "reservations.json"
    reservations_file.write_bytes(reservations_doc(T0, 1, [R_ALICE, R_CAROL], scope=("hede",)))
    capsys.readouterr()

    assert await cli("push-roster", str(roster_file)) == 0
    # (the station answers part 1/1 for a whole document, which the CLI prints)
    assert re.search(rf"^roster version 1( part 1/1)?: applied \({len(UIDS)} entries\)$", capsys.readouterr().out, re.M)
    assert await cli("push-reservations", str(reservations_file)) == 0
    assert re.search(r"^reservations version 1( part 1/1)?: applied \(2 entries\)$", capsys.readouterr().out, re.M)
    st = await status(http, hede)
    assert (st["roster"]["version"], st["reservations"]["version"]) == (1, 1)

    # The same roster again is fine (already there), a newer one too; then the older one exits 1, a wrong token 1.
    assert await cli("push-roster", str(roster_file)) == 0
    newer = tmp_path / "newer.json"
    newer.write_bytes(roster_doc(T0, 2))
    assert await cli("push-roster", str(newer)) == 0
    roster_file.write_bytes(roster_doc(T0, 1))
    capsys.readouterr()
    assert await cli("push-roster", str(roster_file)) == 1
    assert "422 lower_version" in capsys.readouterr().err
    assert await cli("push-roster", str(newer), token="wrong") == 1
    assert "401 unauthorized" in capsys.readouterr().err
    wrong_type = tmp_path / "wrong.json"
    wrong_type.write_bytes(reservations_doc(T0, 3, [], scope=("hede",)))
    assert await cli("push-roster", str(wrong_type)) == 2  # caught before anything is sent
    assert (await status(http, hede))["roster"]["version"] == 2

    decision = await hede.tap("alice")
    assert decision is not None and decision.reason is Reason.RESERVATION

    out = tmp_path / "hede.jsonl"
    assert await cli("pull-journal", "--out", str(out), "--ack", "--limit", "2") == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    last = hede.s.store.last_seq
    assert [e["seq"] for e in lines] == list(range(1, last + 1))
    assert {e["station"] for e in lines} == {"hede"}
    assert "trip.started" in {e["type"] for e in lines}
    assert f"acknowledged up to {last}" in capsys.readouterr().out
    assert (await status(http, hede))["journal"]["acked_seq"] == last

    # Again: nothing new, nothing duplicated; then one tap later, only the new events are appended.
    assert await cli("pull-journal", "--out", str(out), "--ack") == 0
    assert "0 new events" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == last
    await clock.advance(5, step=5)
    await hede.tap("bob")
    assert await cli("pull-journal", "--out", str(out), "--ack") == 0
    seqs = [json.loads(line)["seq"] for line in out.read_text().splitlines()]
    assert seqs == list(range(1, hede.s.store.last_seq + 1))
    assert (await status(http, hede))["journal"]["acked_seq"] == hede.s.store.last_seq

    assert await cli("pull-journal", "--out", str(out), "--limit", "0") == 2
    assert await cli("pull-journal", "--out", str(out), token="wrong") == 1

