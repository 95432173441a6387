"""NFC read latency: bare nfcpy against borne's reader path, same run.

    python -m bench.bench_nfc [--reads 500] [--taps 200]

Over nfcpy's udp driver and an emulated card (``TagEmulator``), interleaved
so both sides see the same machine load:

* ``uid``: bare ``clf.sense()`` of a UID-only card, against borne's
  ``NfcReader.read_target`` + ``read_credential`` (ref of the UID);
* ``ndef``: bare ``clf.sense()`` + ``nfc.tag.activate`` + ``tag.ndef.octets``
  of a signed Type 2 card, against borne's ``read_target`` (UID + raw READs +
  consistency READ) + ``read_credential`` (NDEF parse + Ed25519 verify);
* ``tap``: full presentations through ``NfcReader.run``: from the reader
  thread's detection (``detected_at``) to ``on_card`` running on the event
  loop, NDEF read included.

"Card presented → detected" is not measured: on the udp emulation an
unanswered poll waits 1 s (notes, libraries §7); on real hardware it is the
poll interval. :func:`bench_reads` and :func:`bench_taps` take a ``decide``
hook (called with each credential) so the full tap → release path can be
timed here once the station core exists.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nfc
import nfc.clf
import nfc.tag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from integrations.nfc.emulator import EmulatedCard, TagEmulator
from integrations.nfc.reader import NfcReader
from station.config import ReaderSection
from station.credentials import Credential, encode_signed_card, read_credential
from station.model import CardPresented

CARD_KEY = b"bench-card-key"
UID = bytes.fromhex("08A1B2C3D4E5F6")
Decide = Callable[[Credential], Any]


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    samples_ms: list[float]
    failures: int = 0

    def pct(self, q: float) -> float:
        data = sorted(self.samples_ms)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, max(0, round(q / 100 * len(data)) - 1))]


@dataclass(frozen=True, slots=True)
class Row:
    what: str
    bare: Series
    borne: Series

    def line(self) -> str:
        b50, b99, o50, o99 = self.bare.pct(50), self.bare.pct(99), self.borne.pct(50), self.borne.pct(99)
        return (
            f"| {self.what:<5} | {len(self.bare.samples_ms):>4} | {b50:7.2f} | {b99:7.2f} | {o50:7.2f} | {o99:7.2f} "
            f"| {o50 / b50:5.2f} | {o99 / b99:5.2f} | {self.bare.failures}/{self.borne.failures} |"
        )


HEADER = (
    "| read  |    n | bare p50 | bare p99 | borne p50 | borne p99 | ×p50 | ×p99 | failures bare/borne |\n"
    "|-------|------|----------|----------|-----------|-----------|------|------|---------------------|"
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _issuer() -> tuple[bytes, dict[str, Any]]:
    key = Ed25519PrivateKey.generate()
    return encode_signed_card(key, "th-1", "M-0042", 3, UID), {"th-1": key.public_key()}


def bench_reads(n: int = 500, *, decide: Decide | None = None) -> list[Row]:
    """``n`` interleaved bare/borne reads of a held UID-only card, then of a
    held signed Type 2 card."""
    ndef, keys = _issuer()
    port = _free_port()
    rows = []
    with TagEmulator(port) as emulator, nfc.ContactlessFrontend(f"udp:127.0.0.1:{port}") as clf:
        reader = NfcReader(ReaderSection(device=f"udp:127.0.0.1:{port}"))
        target = nfc.clf.RemoteTarget("106A")

        def bare_uid() -> bool:
            found = clf.sense(target, iterations=1)
            return found is not None and bytes(found.sdd_res) == UID

        def bare_ndef() -> bool:
            found = clf.sense(target, iterations=1)
            tag = nfc.tag.activate(clf, found) if found is not None else None
            return tag is not None and tag.ndef is not None and bytes(tag.ndef.octets) == ndef

        def borne(want_signed: bool) -> Callable[[], bool]:
            def read() -> bool:
                found = clf.sense(target, iterations=1)
                presented = reader.read_target(clf, found) if found is not None else None
                if presented is None:
                    return False
                cred = read_credential(presented, card_key=CARD_KEY, issuer_keys=keys)
                if decide is not None:
                    decide(cred)
                return (cred.signed is not None) == want_signed and cred.error is None

            return read

        for what, card, bare, ours in (
            ("uid", EmulatedCard(uid=UID), bare_uid, borne(False)),
            ("ndef", EmulatedCard(uid=UID, ndef=ndef), bare_ndef, borne(True)),
        ):
            emulator.present(card)
            for _ in range(10):  # warm-up
                bare()
                ours()
            samples: dict[str, list[float]] = {"bare": [], "borne": []}
            failures = {"bare": 0, "borne": 0}
            for _ in range(n):
                for side, fn in (("bare", bare), ("borne", ours)):
                    t0 = time.perf_counter()
                    ok = fn()
                    elapsed = (time.perf_counter() - t0) * 1000
                    if ok:
                        samples[side].append(elapsed)
                    else:
                        failures[side] += 1
            rows.append(
                Row(what, Series("bare", samples["bare"], failures["bare"]), Series("borne", samples["borne"], failures["borne"]))
            )
            emulator.remove()
    return rows


def bench_taps(n: int = 200, *, decide: Decide | None = None) -> Series:
    """``n`` presentations through ``NfcReader.run``, alternating two signed
    cards so each is seen at once as a new card: detection → ``on_card``."""
    return asyncio.run(_bench_taps(n, decide))


async def _bench_taps(n: int, decide: Decide | None) -> Series:
    port = _free_port()
    cards = []
    keys: dict[str, Any] = {}
    key = Ed25519PrivateKey.generate()
    keys["th-1"] = key.public_key()
    for uid in (UID, bytes.fromhex("08A1B2C3D4E5F7")):
        cards.append(EmulatedCard(uid=uid, ndef=encode_signed_card(key, "th-1", "M-0042", 3, uid)))
    samples: list[float] = []
    failures = 0
    done = asyncio.Event()
    delivered = threading.Event()
    reader = NfcReader(ReaderSection(device=f"udp:127.0.0.1:{port}", interval_s=0.02), removal_misses=1)

    async def on_card(presented: CardPresented) -> None:
        nonlocal failures
        cred = read_credential(presented, card_key=CARD_KEY, issuer_keys=keys)
        if decide is not None:
            decide(cred)
        samples.append((time.monotonic() - presented.detected_at) * 1000)
        failures += cred.signed is None
        delivered.set()
        if len(samples) >= n:
            done.set()

    with TagEmulator(port) as emulator:
        task = asyncio.create_task(reader.run(on_card), name="bench-nfc-reader")

        def feed() -> None:
            i = 0
            while not done.is_set():
                delivered.clear()
                emulator.present(cards[i % 2])  # replaces the previous card at once
                delivered.wait(2.0)
                i += 1

        feeder = asyncio.create_task(asyncio.to_thread(feed), name="bench-nfc-feed")
        try:
            await asyncio.wait_for(done.wait(), timeout=max(30.0, n * 0.5))
        finally:
            done.set()
            task.cancel()
            await asyncio.gather(task, feeder, return_exceptions=True)
    return Series("tap", samples, failures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_nfc", description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=500, help="interleaved reads per series (default 500)")
    parser.add_argument("--taps", type=int, default=200, help="presentations through NfcReader.run (default 200)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    rows = bench_reads(args.reads)
    print("Latency in ms over nfcpy's udp emulation (borne = read_target + read_credential).")
    print(HEADER)
    for row in rows:
        print(row.line())
    if args.taps:
        taps = bench_taps(args.taps)
        print()
        print(
            f"tap (NfcReader.run, detected → on_card, NDEF read + Ed25519 included): n={len(taps.samples_ms)} "
            f"p50={taps.pct(50):.2f} ms p99={taps.pct(99):.2f} ms max={max(taps.samples_ms):.2f} ms "
            f"mean={statistics.fmean(taps.samples_ms):.2f} ms, garbled={taps.failures}"
        )
    print(f"\n({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
