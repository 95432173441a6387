"""Benchmark: ModbusPlug against the bare pymodbus calls it makes, same run.

    python -m bench.bench_modbus [--seconds 15] [--switches 1000] [--burst 2000]

The plug simulator runs in a child process (``python -m
integrations.modbus.simulator``), so this process's CPU time is the client's
alone. Measured:

(a) CPU of polling one plug once a second for ``--seconds`` through
    ``ModbusPlug.read()``, then with the same bare requests (read_coils +
    read_input_registers), as % of one core; and CPU per read over a burst of
    back-to-back reads (the steadier figure for the ratio).
(b) Latency of a relay switch with read-back: ``ModbusPlug.switch()`` against
    bare ``write_coil`` + ``read_coils``, interleaved, p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from integrations.modbus.plug import ModbusPlug
from integrations.modbus.profile import load_profile
from station.config import PlugSection

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start_simulator(port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "integrations.modbus.simulator", "--port", str(port), "--soc", "0.3",
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    await asyncio.wait_for(proc.stdout.readline(), 15)  # banner: listening
    return proc


async def _bare_read(client: AsyncModbusTcpClient) -> None:
    coils = await client.read_coils(0, count=1, device_id=1)
    regs = await client.read_input_registers(0, count=8, device_id=1)
    if coils.isError() or regs.isError():
        raise RuntimeError("bare read failed")


async def _bare_switch(client: AsyncModbusTcpClient, on: bool) -> None:
    await client.write_coil(0, on, device_id=1)
    if (await client.read_coils(0, count=1, device_id=1)).bits[0] != on:
        raise RuntimeError("bare read-back disagrees")


async def _poll_cpu(call: Callable[[], Awaitable[Any]], seconds: float) -> tuple[float, int]:
    """% of one core while calling once a second for ``seconds``."""
    polls = 0
    cpu0, t0 = time.process_time(), time.monotonic()
    next_at = t0
    while time.monotonic() - t0 < seconds:
        await call()
        polls += 1
        next_at += 1.0
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    return 100.0 * cpu / wall, polls


async def _burst_cpu(call: Callable[[], Awaitable[Any]], n: int) -> float:
    """CPU milliseconds per call, back to back."""
    cpu0 = time.process_time()
    for _ in range(n):
        await call()
    return 1000.0 * (time.process_time() - cpu0) / n


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(seconds: float, switches: int, burst: int) -> list[tuple[str, str, str, str]]:
    port = _free_port()
    proc = await _start_simulator(port)
    section = PlugSection(transport="tcp", host="127.0.0.1", port=port, timeout_s=1.0)
    plug = ModbusPlug(section, load_profile("simulator"), bay="bench")
    bare = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0, reconnect_delay=0.5, reconnect_delay_max=5.0)
    try:
        await bare.connect()
        for _ in range(20):  # warm both paths (connect, first allocations)
            await plug.read()
            await _bare_read(bare)

        rows: list[tuple[str, str, str, str]] = []
        plug_pct, polls = await _poll_cpu(plug.read, seconds)
        bare_pct, _ = await _poll_cpu(lambda: _bare_read(bare), seconds)
        rows.append(
            (f"(a) CPU, 1 poll/s for {seconds:g} s ({polls} polls)", f"{plug_pct:.3f} % core", f"{bare_pct:.3f} % core",
             f"{plug_pct / bare_pct:.2f}x" if bare_pct else "n/a")
        )
        plug_ms = await _burst_cpu(plug.read, burst)
        bare_ms = await _burst_cpu(lambda: _bare_read(bare), burst)
        rows.append((f"(a) CPU per read, {burst} back to back", f"{plug_ms:.3f} ms", f"{bare_ms:.3f} ms", f"{plug_ms / bare_ms:.2f}x"))

        plug_lat: list[float] = []
        bare_lat: list[float] = []
        for i in range(switches):  # interleaved, so drift hits both alike
            on = i % 2 == 0
            t0 = time.perf_counter()
            await plug.switch(on)
            t1 = time.perf_counter()
            await _bare_switch(bare, not on)
            t2 = time.perf_counter()
            plug_lat.append(1000 * (t1 - t0))
            bare_lat.append(1000 * (t2 - t1))
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            p, b = _pct(plug_lat, q), _pct(bare_lat, q)
            rows.append((f"(b) switch + read-back {label}, n={switches}", f"{p:.3f} ms", f"{b:.3f} ms", f"{p / b:.2f}x"))
        rows.append(
            ("(b) switch + read-back mean", f"{statistics.fmean(plug_lat):.3f} ms", f"{statistics.fmean(bare_lat):.3f} ms",
             f"{statistics.fmean(plug_lat) / statistics.fmean(bare_lat):.2f}x")
        )
        return rows
    finally:
        bare.close()
        await plug.close()
        proc.terminate()
        await proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_modbus", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15, help="polling window for each side (default 15)")
    parser.add_argument("--switches", type=int, default=1000, help="relay switches for each side (default 1000)")
    parser.add_argument("--burst", type=int, default=2000, help="back-to-back reads for CPU per read (default 2000)")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    rows = asyncio.run(run(args.seconds, args.switches, args.burst))
    header = ("measure", "ModbusPlug", "bare pymodbus", "ratio")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(4)]
    line = " | ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*header))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))
    print(f"\npython {sys.version.split()[0]}, pymodbus TCP on loopback, simulator in a child process; {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
