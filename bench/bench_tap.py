"""The station's budgets (DESIGN §6), each beside the bare library calls.

    python -m bench.bench_tap [--members 1000000] [--taps 600] [--idle 15]

A real station (``build_station`` on a YAML-equivalent config) with a roster
of ``--members`` members in SQLite, nfcpy's reader on the udp driver with an
emulated card, the plug and the release coil on two pymodbus simulators in
child processes (Modbus TCP on loopback):

* ``tap → decision``: from the reader thread's detection of the card to the
  commit of the decision's journal event (``trip.started``/``trip.ended``/
  ``card.tapped``);
* ``tap → release``: from detection to the release coil's ON write
  acknowledged by the device (after the journal commit and the plug-off write
  with read-back);
* bare: in the same run, the library calls of that path made directly: one
  nfcpy ``sense`` of the card, pymodbus write+read-back of the plug coil,
  pymodbus write of the release coil, and one fsync'd SQLite insert;
* memory: the process's peak RSS with the roster loaded and the taps done;
* idle CPU: the station with its plug polled every second and the reader
  polling, against the bare polling loops of the same two devices;
* ready: ``borne run`` started as a process until ``/healthz`` answers,
  against a bare interpreter importing the same libraries.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CARD_KEY = "bench-card-key"
MEMBER_A = bytes.fromhex("08AA0001")
MEMBER_B = bytes.fromhex("08BB0002")
CACHE = Path(os.environ.get("BORNE_BENCH_CACHE", Path(tempfile.gettempdir()) / "borne-bench"))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(samples: list[float], q: float) -> float:
    data = sorted(samples)
    if not data:
        return float("nan")
    return data[min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))]


def rss_mb() -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


# -- the roster ----------------------------------------------------------------------


def build_roster(folder: Path, members: int, *, per_part: int = 40_000) -> None:
    """A roster of ``members`` members (two of them the bench's cards), signed
    in parts and applied through the station's own roster path."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from station.credentials import card_ref
    from station.documents import sign
    from station.store.roster import apply_roster

    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"bench central").digest())
    keys = {"bench": key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)}
    card_key = CARD_KEY.encode()

    def member(mid: str, uid: bytes) -> dict[str, Any]:
        return {"member_id": mid, "status": "active", "valid_from": "2026-01-01T00:00:00Z",
                "valid_until": "2030-01-01T00:00:00Z", "cards": [{"ref": card_ref(card_key, uid), "kind": "uid", "serial": 1}]}

    everyone = [member("m-bench-a", MEMBER_A), member("m-bench-b", MEMBER_B)]
    total = members + 2
    parts = -(-total // per_part)
    now = "2026-11-22T00:00:00+00:00"
    for p in range(parts):
        chunk = everyone if p == 0 else []
        start = p * per_part
        chunk = chunk + [member(f"m-{i:07d}", i.to_bytes(4, "big") + b"\x99\x98\x97")
                         for i in range(max(0, start - 2), min(members, start + per_part - 2))]
        doc = {"type": "roster", "kind": "full", "version": 1, "station_scope": ["*"], "issued_at": "2026-11-01T00:00:00Z",
               "expires_at": "2030-01-01T00:00:00Z", "members": chunk, "part": p + 1, "parts": parts}
        apply_roster(str(folder), sign(doc, key, "bench"), keys=keys, station_id="bench", now=now)


def roster_folder(members: int) -> Path:
    folder = CACHE / f"roster-{members}"
    if not (folder / "roster.current").exists():
        t0 = time.perf_counter()
        build_roster(folder, members)
        print(f"built a {members:,}-member roster in {time.perf_counter() - t0:.1f} s ({folder})", flush=True)
    return folder


def fresh_data_dir(members: int) -> Path:
    src = roster_folder(members)
    data = Path(tempfile.mkdtemp(prefix="borne-bench-"))
    name = (src / "roster.current").read_text().strip()
    try:
        os.link(src / name, data / name)  # read-mostly: a hard link is enough
    except OSError:
        import shutil

        shutil.copy2(src / name, data / name)
    (data / "roster.current").write_text(name + "\n")
    return data


# -- the peers -----------------------------------------------------------------------


def start_simulator(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "integrations.modbus.simulator", "--port", str(port), "--speed", "1"],
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"plug simulator did not start on {port}")


def station_config(data: Path, *, plug_port: int, release_port: int, reader_port: int, api_port: int = 0) -> dict[str, Any]:
    return {
        "station": {"id": "bench", "name": "bench", "trust_system_clock": "always"},
        "data_dir": str(data),
        "bays": [{
            "id": "1", "vehicle": "ami-1",
            "plug": {"transport": "tcp", "host": "127.0.0.1", "port": plug_port, "profile": "simulator",
                     "poll_interval_s": 1.0, "timeout_s": 1.0},
            "release": {"kind": "modbus_coil", "host": "127.0.0.1", "port": release_port, "coil": 0, "pulse_s": 0.001},
        }],
        "reader": {"device": f"udp:127.0.0.1:{reader_port}", "debounce_s": 0, "interval_s": 0.02},
        "api": {"listen": "127.0.0.1", "port": api_port,
                "tokens": [{"name": "bench", "sha256": hashlib.sha256(b"bench").hexdigest()}]},
        "central": {"card_key": CARD_KEY},
        "policy": {"unknown_card_limit_per_min": 1000},
    }


# -- tap latency through the station --------------------------------------------------------


async def station_taps(data: Path, n: int, ports: dict[str, int], idle_s: float) -> dict[str, Any]:
    from integrations.nfc.emulator import EmulatedCard, TagEmulator
    from station.bootstrap import build_station, run_station
    from station.config import parse_config

    config = parse_config(station_config(data, plug_port=ports["plug"], release_port=ports["release"],
                                         reader_port=ports["reader"]), source="bench")
    station = build_station(config)
    bay = station.bays["1"]
    release = bay.release_actuator
    detected: dict[str, float] = {}
    decisions: list[float] = []
    releases: list[float] = []
    processed = threading.Event()

    original_on_card = station.on_card

    async def on_card(presented: Any) -> Any:
        detected["t"] = presented.detected_at
        result = await original_on_card(presented)
        processed.set()
        return result

    station.on_card = on_card  # type: ignore[method-assign]

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] in ("trip.started", "trip.ended") or (
            event["type"] == "card.tapped" and event["data"].get("decision") == "refused"
        ):
            decisions.append((time.monotonic() - detected["t"]) * 1000)

    station.subscribe(on_event)
    original_set = release._set  # type: ignore[attr-defined]

    async def timed_set(on: bool) -> None:
        await original_set(on)
        if on:
            releases.append((time.monotonic() - detected["t"]) * 1000)

    release._set = timed_set  # type: ignore[attr-defined]
    cards = [EmulatedCard(uid=MEMBER_A), EmulatedCard(uid=MEMBER_B)]
    out: dict[str, Any] = {}
    with TagEmulator(ports["reader"]) as emulator:
        runner = asyncio.create_task(run_station(station, config, integrations=False), name="bench-station")
        await asyncio.sleep(1.5)  # reader open, plug polled

        # Idle CPU: nothing presented, plug polled every second, reader polling.
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(idle_s)
        out["idle_cpu_pct"] = (time.process_time() - cpu0) / (time.perf_counter() - wall0) * 100

        def feed() -> None:
            # A takes the car, B is refused (no car), A brings it back, B takes it,
            # A is refused, B brings it back... A third of the taps release the car;
            # consecutive cards always differ, so each is a new presentation.
            for i in range(n):
                processed.clear()
                emulator.present(cards[i % 2])
                processed.wait(5.0)

        await asyncio.to_thread(feed)
        emulator.remove()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    out["decisions"] = decisions
    out["releases"] = releases
    out["rss_mb"], out["hwm_mb"] = rss_mb()
    return out


# -- the bare library calls, same run --------------------------------------------------------


async def bare_path(n: int, ports: dict[str, int], idle_s: float) -> dict[str, Any]:
    import nfc
    import nfc.clf
    from pymodbus.client import AsyncModbusTcpClient

    from integrations.nfc.emulator import EmulatedCard, TagEmulator

    plug = AsyncModbusTcpClient("127.0.0.1", port=ports["plug"], timeout=1.0, retries=0)
    coil = AsyncModbusTcpClient("127.0.0.1", port=ports["release"], timeout=1.0, retries=0)
    await plug.connect()
    await coil.connect()
    folder = Path(tempfile.mkdtemp(prefix="borne-bare-"))
    db = sqlite3.connect(folder / "j.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE journal (seq INTEGER PRIMARY KEY, id TEXT, data TEXT)")
    samples: list[float] = []
    out: dict[str, Any] = {}
    with TagEmulator(ports["reader"]) as emulator, nfc.ContactlessFrontend(f"udp:127.0.0.1:{ports['reader']}") as clf:
        target = nfc.clf.RemoteTarget("106A")
        cpu0, wall0 = time.process_time(), time.perf_counter()
        end = time.monotonic() + idle_s
        while time.monotonic() < end:  # the same two devices polled bare: plug each second, reader idle
            await plug.read_coils(0, count=1, device_id=1)
            await plug.read_input_registers(0, count=8, device_id=1)
            t = time.monotonic()
            while time.monotonic() - t < 1.0:
                await asyncio.to_thread(clf.sense, target, iterations=1, interval=0.02)
        out["idle_cpu_pct"] = (time.process_time() - cpu0) / (time.perf_counter() - wall0) * 100
        emulator.present(EmulatedCard(uid=MEMBER_A))
        for i in range(n):
            t0 = time.perf_counter()
            found = clf.sense(target, iterations=1, interval=0.02)
            await plug.write_coil(0, False, device_id=1)
            await plug.read_coils(0, count=1, device_id=1)
            await coil.write_coil(0, True, device_id=1)
            db.execute("INSERT INTO journal (id, data) VALUES (?, ?)", (str(i), json.dumps({"i": i})))
            if found is not None:
                samples.append((time.perf_counter() - t0) * 1000)
    plug.close()
    coil.close()
    db.close()
    out["samples"] = samples
    return out


# -- readiness ---------------------------------------------------------------------------


def readiness(data: Path, ports: dict[str, int]) -> tuple[float, float]:
    import yaml

    api_port = free_port()
    cfg = data / "station.yaml"
    cfg.write_text(yaml.safe_dump(station_config(data, plug_port=ports["plug"], release_port=ports["release"],
                                                 reader_port=free_port(socket.SOCK_DGRAM), api_port=api_port)))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "station.cli", "--log-level", "WARNING", "run", "-c", str(cfg)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = float("nan")
    try:
        while time.perf_counter() - t0 < 30:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/healthz", timeout=0.5) as resp:
                    if resp.status == 200:
                        ready = time.perf_counter() - t0
                        break
            except OSError:
                time.sleep(0.01)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    t1 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import aiohttp, pymodbus.client, nfc, yaml, pydantic, cryptography, sqlite3"],
                   cwd=ROOT, env=env, check=True)
    return ready, time.perf_counter() - t1


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_tap", description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--taps", type=int, default=660, help="taps in all (a third release the car)")
    parser.add_argument("--idle", type=float, default=15.0, help="seconds of idle CPU measurement")
    args = parser.parse_args(argv)

    ports = {"plug": free_port(), "release": free_port(), "reader": free_port(socket.SOCK_DGRAM)}
    sims = [start_simulator(ports["plug"]), start_simulator(ports["release"])]
    try:
        data = fresh_data_dir(args.members)
        station = asyncio.run(station_taps(data, args.taps, ports, args.idle))
        bare = asyncio.run(bare_path(max(200, args.taps // 3), ports, args.idle))
        ready, bare_ready = readiness(data, ports)
    finally:
        for sim in sims:
            sim.terminate()
        for sim in sims:
            sim.wait(timeout=10)

    dec, rel, raw = station["decisions"], station["releases"], bare["samples"]
    rows = [
        ("tap → decision journaled", f"{pct(dec, 50):.2f} / {pct(dec, 99):.2f} ms", f"{pct(raw, 50):.2f} / {pct(raw, 99):.2f} ms",
         f"{pct(dec, 99) / pct(raw, 99):.2f}×", f"n={len(dec)}"),
        ("tap → release on the wire", f"{pct(rel, 50):.2f} / {pct(rel, 99):.2f} ms", f"{pct(raw, 50):.2f} / {pct(raw, 99):.2f} ms",
         f"{pct(rel, 99) / pct(raw, 99):.2f}×", f"n={len(rel)}; budget p99 ≤ 20 ms"),
        ("memory (RSS now / peak)", f"{station['rss_mb']:.0f} / {station['hwm_mb']:.0f} MB", "", "",
         "budget ≤ 80 MB"),
        ("idle CPU (plug polled 1/s)", f"{station['idle_cpu_pct']:.2f} %", f"{bare['idle_cpu_pct']:.2f} %",
         f"{station['idle_cpu_pct'] / max(bare['idle_cpu_pct'], 1e-6):.2f}×", "budget ≤ 2 % of a core"),
        ("ready (start → /healthz)", f"{ready:.2f} s", f"{bare_ready:.2f} s", f"{ready / bare_ready:.2f}×",
         "budget ≤ 2 s; bare = interpreter + imports"),
    ]
    print(f"\nstation budgets with a {args.members:,}-member roster (p50 / p99), borne and bare in the same run")
    widths = [max(len(str(r[i])) for r in rows + [("measure", "borne", "bare", "ratio", "note")]) for i in range(5)]
    header = ("measure", "borne", "bare", "ratio", "note")
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
