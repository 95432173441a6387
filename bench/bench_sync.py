"""Benchmark: the sync API under load, against the bare library calls, same run.

    python -m bench.bench_sync [--sizes 100000,1000000] [--journal-events 100000]

(1) A full roster of N members signed in parts (each part a signed document of
    its own, body <= the 8 MiB limit) and sent with ``PUT /v1/roster`` over a
    real socket to a station running in a child process, the way ``borne run``
    runs it (``run_station``: supervisor, API server, spawn worker for large
    bodies, simulated plugs and reader). Reported: the time from the first PUT
    to the answer of the last one (the swap), beside the bare cost of
    ``json.loads`` + base64 + Ed25519 verify + ``json.loads`` of the same parts
    (ratio); the peak RSS of the station process and of its worker process,
    sampled from /proc; and the latency of taps made inside the station
    through ``Station.on_card`` every ~20 ms (one card, taking a car and
    returning it, so every tap journals) during the apply against at rest
    (before and after the apply, same run).
(2) The journal feed: N events written through the store, then read with
    ``GET /v1/journal?after=..&limit=1000`` over HTTP, events/s, beside the
    bare SQLite ``SELECT`` of the same pages (ratio).

The signed parts are generated once and cached in a temp folder (not
measured). Nothing heavy is imported at module level: the station's spawn
worker re-imports this module as ``__mp_main__``, and it should cost it no
more than ``borne``'s own entry point would.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import platform
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MAX_BODY = 8 * 1024 * 1024  # the API's default body limit (DESIGN §5 Size)
PART_MEMBERS = 30_000  # ~200 B of JSON per member, ~270 B once base64'd: ~8.0 MB per part
ROSTER_VERSION = 2  # the station starts on the demo roster, version 1
TAP_INTERVAL_S = 0.020
MEMORY_BUDGET_MB = 80.0
APPLY_BUDGET_S = 30.0
TAP_BUDGET_MS = 20.0
RATIO_GOAL = 1.3
_CACHE_FORMAT = 1  # bump when the generated documents change


# -- signed parts, generated once ------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PartSet:
    members: int
    paths: tuple[Path, ...]
    bytes: int
    version: int


def _rfc(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _member(i: int) -> dict[str, Any]:
    status = "suspended" if i % 50 == 7 else ("revoked" if i % 97 == 3 else "active")
    cards = [{"ref": hashlib.blake2b(b"bench-card-%d" % i, digest_size=16).hexdigest(), "kind": "uid", "serial": 1}]
    if i % 10 == 0:  # a tenth of the members carry a second, signed card
        cards.append({"ref": hashlib.blake2b(b"bench-card2-%d" % i, digest_size=16).hexdigest(), "kind": "signed",
                      "serial": 2})
    return {"member_id": f"m-{i:07d}", "status": status, "valid_from": "2026-01-01T00:00:00Z",
            "valid_until": "2027-12-31T23:59:59Z", "cards": cards}


def _demo_members(now: datetime) -> list[dict[str, Any]]:
    """The demo roster's members, so the tapping card stays known after the swap."""
    from station.demo import roster_document

    body = roster_document(now)
    payload = json.loads(base64.b64decode(json.loads(body)["payload"]))
    return list(payload["members"])


def roster_parts(members: int, *, part_members: int = PART_MEMBERS, cache: Path | None = None,
                 max_body: int = MAX_BODY) -> PartSet:
    """Signed parts of a full roster of ``members`` entries (cached on disk)."""
    from station.demo import DEMO_KEY_ID, demo_key
    from station.documents import sign

    cache = cache or Path(tempfile.gettempdir()) / "borne-bench-sync"
    folder = cache / f"roster-{members}-{part_members}-f{_CACHE_FORMAT}"
    meta_path = folder / "meta.json"
    now = datetime.now(UTC)
    try:
        meta = json.loads(meta_path.read_text())
        if datetime.fromisoformat(meta["expires_at"]) - now > timedelta(days=2):
            paths = tuple(folder / name for name in meta["files"])
            if all(p.exists() for p in paths):
                return PartSet(members=members, paths=paths, bytes=meta["bytes"], version=meta["version"])
    except (OSError, ValueError, KeyError):
        pass
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    demo = _demo_members(now)
    if members < len(demo):
        raise ValueError(f"at least {len(demo)} members")
    parts = max(1, -(-members // part_members))
    expires = now + timedelta(days=30)
    head = {"type": "roster", "kind": "full", "version": ROSTER_VERSION, "station_scope": ["*"],
            "issued_at": _rfc(now), "expires_at": _rfc(expires)}
    key = demo_key("central")
    files, total = [], 0
    for p in range(parts):
        lo, hi = p * part_members, min(members, (p + 1) * part_members)
        entries = [demo[i] if i < len(demo) else _member(i) for i in range(lo, hi)]
        doc = {**head, "members": entries}
        if parts > 1:
            doc.update(part=p + 1, parts=parts)
        body = sign(doc, key, DEMO_KEY_ID)
        if len(body) > max_body:
            raise ValueError(f"part {p + 1} is {len(body)} bytes, over the {max_body} limit: lower --part-members")
        name = f"part-{p + 1:03d}.json"
        (folder / name).write_bytes(body)
        files.append(name)
        total += len(body)
    meta_path.write_text(json.dumps({"files": files, "bytes": total, "version": ROSTER_VERSION,
                                     "expires_at": expires.isoformat()}))
    return PartSet(members=members, paths=tuple(folder / f for f in files), bytes=total, version=ROSTER_VERSION)


def bare_verify(parts: PartSet) -> float:
    """Seconds of json.loads + base64 + Ed25519 verify + json.loads, all parts."""
    from station.demo import demo_key, public_b64
    from station.documents import public_key

    public = public_key(public_b64(demo_key("central")))
    spent = 0.0
    for path in parts.paths:
        body = path.read_bytes()
        t0 = time.perf_counter()
        envelope = json.loads(body)
        payload = base64.b64decode(envelope["payload"], validate=True)
        public.verify(base64.b64decode(envelope["signature"], validate=True), payload)
        doc = json.loads(payload)
        spent += time.perf_counter() - t0
        del envelope, payload, doc, body
    return spent


# -- the station, in a child process ---------------------------------------------------


def _vm(pid: int, field_name: str) -> int | None:
    """A VmRSS/VmHWM-style field of /proc/PID/status, in kB."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as fh:
                kids = [int(x) for x in fh.read().split()]
        except OSError:
            kids = []
        out.extend(kids)
        todo.extend(kids)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class MemorySampler:
    """Samples the station process and its descendants from /proc."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.hwm_kb: dict[int, int] = {}  # per pid: last VmHWM seen (the kernel's peak)
        self.rss_kb: dict[int, int] = {}  # per pid: last VmRSS seen
        self.names: dict[int, str] = {}
        self.max_sum_kb = 0  # peak of the summed VmRSS of the station and its worker, as sampled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        total = 0
        for pid in [self.pid, *_descendants(self.pid)]:
            rss, hwm = _vm(pid, "VmRSS"), _vm(pid, "VmHWM")
            if rss is None or hwm is None:
                continue
            if pid not in self.names:
                self.names[pid] = _cmdline(pid)
            self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), hwm)
            self.rss_kb[pid] = rss
            if "resource_tracker" not in self.names[pid]:
                total += rss
        self.max_sum_kb = max(self.max_sum_kb, total)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def rss_mb(self) -> float:
        return (_vm(self.pid, "VmRSS") or 0) / 1024

    def main_mb(self) -> float:
        return self.hwm_kb.get(self.pid, 0) / 1024

    def _workers(self, kb: dict[int, int]) -> list[int]:
        return [v for pid, v in kb.items() if pid != self.pid and "resource_tracker" not in self.names.get(pid, "")]

    def worker_mb(self) -> float:
        """Peak of the pool worker (the resource tracker is left out)."""
        return max(self._workers(self.hwm_kb), default=0) / 1024

    def worker_rss_mb(self) -> float:
        """The pool worker's VmRSS at the last sample (it stays alive, idle, after the apply)."""
        self.sample()
        return max(self._workers(self.rss_kb), default=0) / 1024


class StationProcess:
    """``python -m bench.bench_sync --station DIR``: a station as ``borne run`` runs it."""

    def __init__(self, data_dir: Path, *, taps: bool, tap_interval: float = TAP_INTERVAL_S) -> None:
        self.data_dir = data_dir
        self.token = secrets.token_urlsafe(16)
        self.taps = taps
        self.tap_interval = tap_interval
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.pid = 0
        self._stderr = data_dir.parent / f"{data_dir.name}.stderr"

    async def start(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "bench.bench_sync", "--station", str(self.data_dir),
                "--tap-interval-ms", str(self.tap_interval * 1000)]
        if not self.taps:
            args.append("--no-taps")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               "BORNE_BENCH_TOKEN": self.token}
        with open(self._stderr, "wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *args, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                limit=64 * 1024 * 1024)
        self.pid = self.proc.pid
        hello = await self._answer(60)
        self.port = int(hello["ready"])

    async def _answer(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            await self.proc.wait()
            raise RuntimeError(f"the station exited ({self.proc.returncode}): {self.stderr_tail()}")
        return json.loads(line)

    def stderr_tail(self) -> str:
        try:
            return self._stderr.read_text()[-2000:]
        except OSError:
            return ""

    async def command(self, cmd: str, timeout: float = 300, **kwargs: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **kwargs}) + "\n").encode())
        await self.proc.stdin.drain()
        return await self._answer(timeout)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            await self.command("quit", timeout=30)
            await asyncio.wait_for(self.proc.wait(), 30)
        except (TimeoutError, RuntimeError, BrokenPipeError, ConnectionResetError):
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def _station_main(data_dir: Path, *, taps: bool, tap_interval: float) -> None:
    """Child side: build the station on simulated devices, serve, tap, obey stdin."""
    import hashlib as _hashlib
    import logging

    from integrations.simulated import SimulatedPlug, SimulatedReader, SimulatedRelease
    from station.bootstrap import Devices, build_station, run_station
    from station.clock import SystemClock
    from station.demo import CARDS, demo_config, roster_document
    from station.model import CardPresented
    from station.supervisor import Service

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    token = os.environ["BORNE_BENCH_TOKEN"]
    shutil.rmtree(data_dir, ignore_errors=True)
    clock = SystemClock()
    config = demo_config(data_dir, port=0, token_sha256=_hashlib.sha256(token.encode()).hexdigest(),
                         plug={"transport": "simulated", "poll_interval_s": 1.0})
    # Taps every 20 ms by one card: no debounce, or every other tap would be ignored.
    config = config.model_copy(update={"reader": config.reader.model_copy(update={"debounce_s": 0.0})})
    plugs = {b.id: SimulatedPlug(clock) for b in config.bays}
    releases = {b.id: SimulatedRelease() for b in config.bays}
    station = build_station(config, clock=clock, boot="bench",
                            devices=Devices(plugs=dict(plugs), releases=dict(releases), reader=SimulatedReader()))
    await station.apply_document(roster_document(clock.now()), expected_type="roster")
    records: list[tuple[float, float, str]] = []
    lags: list[tuple[float, float]] = []
    commits: list[tuple[float, float]] = []
    out = sys.stdout
    journal_transaction = station.store.transaction

    @contextmanager
    def timed_transaction() -> Iterator[Any]:
        """The store's transaction, timed: a journal write is where a tap waits for the disk."""
        t0 = time.monotonic()
        with journal_transaction() as tx:
            yield tx
        commits.append((t0, time.monotonic() - t0))

    station.store.transaction = timed_transaction  # type: ignore[method-assign]

    def say(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    async def tapper() -> None:
        presented = CardPresented(uid=bytes.fromhex(CARDS["bob"]))
        due = time.monotonic()
        while True:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            intended = due
            decision = await station.on_card(presented)
            done = time.monotonic()
            records.append((intended, done, decision.reason.value if decision else "ignored"))
            due = max(intended + tap_interval, done)  # late: tap again at once, never queue a backlog

    async def lag_monitor() -> None:
        """How late the event loop wakes a 5 ms sleep: time it cannot serve anyone."""
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(0.005)
            lags.append((t0, time.monotonic() - t0 - 0.005))

    def fill(n: int) -> None:
        batch = 1000
        for start in range(0, n, batch):
            with station.store.transaction() as tx:
                for i in range(start, min(n, start + batch)):
                    tx.append("card.tapped", member_id=f"m-{i % 100_000:07d}",
                              data={"decision": "refused", "reason": "no_reservation", "source": "card"})

    async def control() -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        api = station.api_server  # type: ignore[attr-defined]
        say({"ready": await api.wait_ready(), "pid": os.getpid()})
        while line := await reader.readline():
            msg = json.loads(line)
            if msg["cmd"] == "quit":
                say({"ok": True})
                return
            if msg["cmd"] == "fill":
                t0 = time.perf_counter()
                fill(int(msg["n"]))
                say({"seconds": time.perf_counter() - t0, "last_seq": station.store.last_seq})
            elif msg["cmd"] == "taps":
                say({"taps": records, "lags": lags, "commits": commits})
            else:
                say({"error": f"unknown command {msg['cmd']!r}"})

    extra = [Service(name="bench-control", run=control, critical=True)]
    if taps:
        extra += [Service(name="bench-taps", run=tapper), Service(name="bench-lag", run=lag_monitor)]
    await run_station(station, config, extra=extra)


# -- measurements ----------------------------------------------------------------------


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


@dataclass(slots=True)
class TapStats:
    n: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    reasons: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, records: Sequence[Sequence[Any]], lo: float, hi: float) -> TapStats:
        inside = [r for r in records if lo <= r[0] < hi]
        lat = [(r[1] - r[0]) * 1000 for r in inside]
        reasons: dict[str, int] = {}
        for r in inside:
            reasons[r[2]] = reasons.get(r[2], 0) + 1
        return cls(n=len(lat), p50_ms=_pct(lat, 50), p99_ms=_pct(lat, 99), max_ms=max(lat, default=float("nan")),
                   reasons=reasons)


def _lag(lags: Sequence[Sequence[float]], lo: float, hi: float) -> tuple[float, float]:
    """p99 and max, in ms, of the durations (s) that started in [lo, hi)."""
    inside = [lag * 1000 for t, lag in lags if lo <= t < hi]
    return _pct(inside, 99), max(inside, default=float("nan"))


@dataclass(slots=True)
class RosterResult:
    members: int
    parts: int
    mbytes: float
    apply_s: float
    bare_s: float
    first_part_s: float
    slowest_part_s: float
    last_part_s: float
    size_after: int
    rss_idle_mb: float
    rss_after_mb: float
    worker_after_mb: float
    main_peak_mb: float
    worker_peak_mb: float
    tree_peak_mb: float
    rest: TapStats
    during: TapStats
    lag_rest: tuple[float, float]
    lag_during: tuple[float, float]
    commit_rest: tuple[float, float]
    commit_during: tuple[float, float]

    @property
    def ratio(self) -> float:
        return self.apply_s / self.bare_s if self.bare_s else float("nan")

    @property
    def tap_ratio(self) -> float:
        return self.during.p99_ms / self.rest.p99_ms if self.rest.p99_ms else float("nan")


@dataclass(slots=True)
class JournalResult:
    events: int
    pages: int
    fill_s: float
    http_s: float
    bare_s: float
    rest: TapStats
    during: TapStats
    lag_during: tuple[float, float]

    @property
    def http_rate(self) -> float:
        return self.events / self.http_s

    @property
    def bare_rate(self) -> float:
        return self.events / self.bare_s

    @property
    def ratio(self) -> float:
        return self.http_s / self.bare_s


async def roster_apply(parts: PartSet, work: Path, *, rest_s: float = 4.0) -> RosterResult:
    """Send ``parts`` to a fresh station over HTTP while it taps; measure."""
    import aiohttp

    bare = bare_verify(parts)  # on a quiet machine, before the station starts
    station = StationProcess(work / f"station-{parts.members}", taps=True)
    await station.start()
    try:
        with MemorySampler(station.pid) as memory:
            await asyncio.sleep(0.5)  # the first taps warm the caches
            rest0 = time.monotonic()
            await asyncio.sleep(rest_s)
            rest1 = time.monotonic()
            rss_idle = memory.rss_mb()
            timings: list[float] = []
            answer: dict[str, Any] = {}
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
                headers = {**station.headers, "Content-Type": "application/json"}
                a0 = time.monotonic()
                for path in parts.paths:
                    body = path.read_bytes()
                    t0 = time.monotonic()
                    async with http.put(f"{station.url}/v1/roster", data=body, headers=headers) as resp:
                        answer = await resp.json()
                        if resp.status != 200:
                            raise RuntimeError(f"PUT {path.name}: {resp.status} {answer}")
                    timings.append(time.monotonic() - t0)
                    del body
                a1 = time.monotonic()
                if not answer.get("applied"):
                    raise RuntimeError(f"the last part did not apply the roster: {answer}")
                async with http.get(f"{station.url}/v1/status", headers=station.headers) as resp:
                    status = await resp.json()
            await asyncio.sleep(0.5)
            after0 = time.monotonic()
            await asyncio.sleep(rest_s)
            after1 = time.monotonic()
            rss_after, worker_after = memory.rss_mb(), memory.worker_rss_mb()
            samples = await station.command("taps")
    finally:
        await station.stop()
    taps, lags, commits = samples["taps"], samples["lags"], samples["commits"]

    def resting(xs: list[Any]) -> list[Any]:
        return [x for x in xs if rest0 <= x[0] < rest1 or after0 <= x[0] < after1]

    rest = TapStats.of(resting(taps), 0, float("inf"))
    during = TapStats.of(taps, a0, a1)
    return RosterResult(
        members=parts.members, parts=len(parts.paths), mbytes=parts.bytes / 1e6, apply_s=a1 - a0, bare_s=bare,
        first_part_s=timings[0], slowest_part_s=max(timings), last_part_s=timings[-1],
        size_after=int(status["roster"]["size"]), rss_idle_mb=rss_idle, rss_after_mb=rss_after,
        worker_after_mb=worker_after,
        main_peak_mb=memory.main_mb(), worker_peak_mb=memory.worker_mb(), tree_peak_mb=memory.max_sum_kb / 1024,
        rest=rest, during=during, lag_rest=_lag(resting(lags), 0, float("inf")), lag_during=_lag(lags, a0, a1),
        commit_rest=_lag(resting(commits), 0, float("inf")), commit_during=_lag(commits, a0, a1),
    )


async def journal_feed(events: int, work: Path, *, page: int = 1000, rest_s: float = 2.0) -> JournalResult:
    """Fill a station's journal, then page through it over HTTP and bare."""
    import aiohttp

    from station.store.state import _EVENT_COLUMNS

    station = StationProcess(work / "station-journal", taps=True)
    await station.start()
    try:
        filled = await station.command("fill", n=events)
        await asyncio.sleep(0.3)
        rest0 = time.monotonic()
        await asyncio.sleep(rest_s)
        rest1 = time.monotonic()
        cursors: list[int] = []
        seen = 0
        async with aiohttp.ClientSession() as http:
            after = 0
            h0 = time.monotonic()
            while seen < events:
                cursors.append(after)
                async with http.get(f"{station.url}/v1/journal", params={"after": after, "limit": page},
                                    headers=station.headers) as resp:
                    body = await resp.json()
                    if resp.status != 200:
                        raise RuntimeError(f"GET /v1/journal: {resp.status} {body}")
                if not body["events"]:
                    break
                seen += len(body["events"])
                after = body["next_after"]
            h1 = time.monotonic()
        samples = await station.command("taps")
        # The same pages, bare: one read-only connection, the store's own query.
        conn = sqlite3.connect(f"file:{station.data_dir / 'station.db'}?mode=ro", uri=True)
        try:
            t0 = time.perf_counter()
            for cursor in cursors:
                conn.execute(f"SELECT {_EVENT_COLUMNS} FROM journal WHERE seq > ? ORDER BY seq LIMIT ?",
                             (cursor, page)).fetchall()
            bare = time.perf_counter() - t0
        finally:
            conn.close()
    finally:
        await station.stop()
    return JournalResult(events=seen, pages=len(cursors), fill_s=filled["seconds"], http_s=h1 - h0, bare_s=bare,
                         rest=TapStats.of(samples["taps"], rest0, rest1),
                         during=TapStats.of(samples["taps"], h0, h1), lag_during=_lag(samples["lags"], h0, h1))


# -- report -----------------------------------------------------------------------------


def _ok(good: bool) -> str:
    return "ok" if good else "OVER"


def report(rosters: Sequence[RosterResult], journal: JournalResult | None, *, out: Any = print) -> None:
    out(f"bench_sync: {os.cpu_count()} cores, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    if rosters:
        out("")
        out("(1) full roster in signed parts, PUT /v1/roster over HTTP, body <= 8 MiB")
        out(f"{'members':>9} {'parts':>5} {'MB':>5} | {'apply s':>7} {'bare s':>6} {'ratio':>6} | "
            f"{'PUT s first/slowest/last':>24} | {'RSS MB before/after (worker)':>28} | "
            f"{'peak MB station/worker/sum':>26}")
        for r in rosters:
            out(f"{r.members:>9} {r.parts:>5} {r.mbytes:>5.0f} | {r.apply_s:>7.2f} {r.bare_s:>6.2f} {r.ratio:>5.1f}x | "
                f"{r.first_part_s:>10.2f} {r.slowest_part_s:>6.2f} {r.last_part_s:>6.2f} | "
                f"{r.rss_idle_mb:>13.1f} {r.rss_after_mb:>6.1f} ({r.worker_after_mb:>5.1f}) | "
                f"{r.main_peak_mb:>14.1f} {r.worker_peak_mb:>6.1f} {r.tree_peak_mb:>4.0f}")
        out("  apply s: first PUT to the answer of the last one (the swap); bare s: json.loads + base64 + Ed25519")
        out("  verify + json.loads of the same parts, in this process; RSS: the station's VmRSS at rest before and")
        out("  after the apply (and its idle worker's); peak: VmHWM of the station process and of its spawn worker,")
        out("  peak of their sampled sum.")
        out("")
        out(f"    taps every {TAP_INTERVAL_S * 1000:.0f} ms through Station.on_card (take a car, return it: each tap"
            " journals), ms")
        out(f"{'members':>9} | {'rest p50/p99':>13} | {'apply p50/p99/max':>19} | {'p99 ratio':>9} | "
            f"{'journal write p99 rest/apply, max':>33} | {'loop lag p99 rest/apply, max':>28}")
        for r in rosters:
            out(f"{r.members:>9} | {r.rest.p50_ms:>6.1f} {r.rest.p99_ms:>6.1f} | {r.during.p50_ms:>5.1f} "
                f"{r.during.p99_ms:>6.1f} {r.during.max_ms:>6.0f} | {r.tap_ratio:>8.1f}x | "
                f"{r.commit_rest[0]:>18.1f} {r.commit_during[0]:>6.1f} {r.commit_during[1]:>7.0f} | "
                f"{r.lag_rest[0]:>13.1f} {r.lag_during[0]:>6.1f} {r.lag_during[1]:>7.0f}")
        out("  journal write: one store transaction (fsync'd commit), on the event loop; loop lag: how late the loop")
        out("  wakes a 5 ms sleep (includes the taps' own journal writes).")
        for r in rosters:
            out(f"  {r.members}: roster size after {r.size_after}; taps at rest n={r.rest.n} {r.rest.reasons}; "
                f"during n={r.during.n} {r.during.reasons}")
    if journal is not None:
        j = journal
        out("")
        out(f"(2) journal feed: {j.events} events (written in {j.fill_s:.1f} s through the store), "
            f"{j.pages} pages of 1000")
        out(f"{'':>28} {'seconds':>8} {'events/s':>10}")
        out(f"{'GET /v1/journal over HTTP':>28} {j.http_s:>8.2f} {j.http_rate:>10.0f}")
        out(f"{'bare SQLite SELECT':>28} {j.bare_s:>8.2f} {j.bare_rate:>10.0f}   ratio {j.ratio:.1f}x")
        out(f"  taps while paging: p50 {j.during.p50_ms:.1f} ms, p99 {j.during.p99_ms:.1f} ms, max "
            f"{j.during.max_ms:.0f} ms (n={j.during.n}; at rest p50 {j.rest.p50_ms:.1f}, p99 {j.rest.p99_ms:.1f});"
            f" loop lag p99 {j.lag_during[0]:.1f} ms, max {j.lag_during[1]:.0f} ms")
    if rosters:
        big = [r for r in rosters if r.members >= 1_000_000] or rosters[-1:]
        out("")
        out("budgets (DESIGN §6):")
        for r in big:
            out(f"  {r.members} applied in parts <= {APPLY_BUDGET_S:.0f} s: {r.apply_s:.1f} s "
                f"{_ok(r.apply_s <= APPLY_BUDGET_S)}")
            out(f"  memory <= {MEMORY_BUDGET_MB:.0f} MB: station at rest with it {r.rss_after_mb:.1f} MB "
                f"{_ok(r.rss_after_mb <= MEMORY_BUDGET_MB)} (+ idle worker {r.worker_after_mb:.1f} MB); "
                f"peak during the apply: station {r.main_peak_mb:.1f} MB {_ok(r.main_peak_mb <= MEMORY_BUDGET_MB)}, "
                f"worker {r.worker_peak_mb:.1f} MB {_ok(r.worker_peak_mb <= MEMORY_BUDGET_MB)}")
            out(f"  tap p99 during the apply <= {TAP_BUDGET_MS:.0f} ms: {r.during.p99_ms:.1f} ms "
                f"{_ok(r.during.p99_ms <= TAP_BUDGET_MS)}; against rest {r.tap_ratio:.1f}x (goal <= {RATIO_GOAL}x) "
                f"{_ok(r.tap_ratio <= RATIO_GOAL)}")


async def run(sizes: Sequence[int], *, journal_events: int, part_members: int = PART_MEMBERS, rest_s: float = 4.0,
              work: Path | None = None, cache: Path | None = None,
              progress: Any = None) -> tuple[list[RosterResult], JournalResult | None]:
    say = progress or (lambda message: None)
    own = work is None
    work = work or Path(tempfile.mkdtemp(prefix="borne-bench-sync-"))
    try:
        results = []
        for n in sizes:
            t0 = time.monotonic()
            parts = roster_parts(n, part_members=part_members, cache=cache)
            say(f"roster {n}: {len(parts.paths)} signed parts ready ({time.monotonic() - t0:.1f} s)")
            results.append(await roster_apply(parts, work, rest_s=rest_s))
            say(f"roster {n}: applied in {results[-1].apply_s:.1f} s")
        journal = None
        if journal_events:
            journal = await journal_feed(journal_events, work, rest_s=min(rest_s, 2.0))
            say(f"journal: {journal.events} events paged in {journal.http_s:.1f} s")
        return results, journal
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(float(s)) for s in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of member counts: {text!r}") from None
    if not sizes or min(sizes) < 10:
        raise argparse.ArgumentTypeError("each size must be >= 10 members")
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_sync", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=_sizes, default=[100_000, 1_000_000], help="roster sizes (default 100000,1000000)")
    p.add_argument("--journal-events", type=int, default=100_000, help="events in the journal feed (0: skip)")
    p.add_argument("--part-members", type=int, default=PART_MEMBERS, help="members per signed part")
    p.add_argument("--rest-s", type=float, default=4.0, help="seconds of taps at rest before and after each apply")
    p.add_argument("--cache", type=Path, default=None, help="where the signed parts are kept between runs")
    p.add_argument("--station", type=Path, help=argparse.SUPPRESS)  # child mode
    p.add_argument("--no-taps", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tap-interval-ms", type=float, default=TAP_INTERVAL_S * 1000, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.station is not None:
        asyncio.run(_station_main(args.station, taps=not args.no_taps, tap_interval=args.tap_interval_ms / 1000))
        return 0
    t0 = time.monotonic()
    rosters, journal = asyncio.run(run(args.sizes, journal_events=args.journal_events, part_members=args.part_members,
                                       rest_s=args.rest_s, cache=args.cache,
                                       progress=lambda m: print(f"[{time.monotonic() - t0:6.1f} s] {m}", flush=True)))
    print()
    report(rosters, journal)
    print(f"\ntotal {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
