"""NFC-A card emulation over nfcpy's ``udp:`` driver, for tests, the demo and
``borne tap``.

nfcpy's udp driver carries each RF frame as one datagram ``"<brty> <hex>"``
(``"106A 26"`` is a SENS_REQ) and ``"RFOFF"`` when the reader drops its
field; the reader sends from an ephemeral socket to ``HOST:PORT`` and the
card answers to the sender. :class:`TagEmulator` answers that protocol on one
socket bound for its whole life: nfcpy's own listen path closes and re-binds
its socket after every RF-off, so the reader's next poll is lost and costs it
a 1 s stall (notes, libraries §7). It emulates:

* a UID-only card (default SAK 0x08, MIFARE-Classic-like: the reader reads
  the UID and nothing else), 4, 7 or 10 byte UID;
* a Type 2 tag (SAK 0x00) serving an NDEF message through READ (0x30) over an
  NTAG213-like memory image; a UID starting with 0x04 (NXP) also answers
  GET_VERSION as an NTAG213, since nfcpy probes NXP tags.

:func:`serve_type2_with_nfcpy` is the same Type 2 tag served by nfcpy's own
``ContactlessFrontend.listen``/``exchange`` (slower; used to check that the
reader works against nfcpy on both sides).
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import threading
import time
from binascii import hexlify, unhexlify
from dataclasses import dataclass, field
from functools import reduce
from operator import xor

log = logging.getLogger(__name__)

_NTAG213_VERSION = bytes.fromhex("0004040201000F03")
_NAK = b"\x00"


def _bcc(data: bytes) -> int:
    return reduce(xor, data, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatedCard:
    """A card to present. ``ndef`` makes it a Type 2 tag carrying that NDEF
    message; without it the card only gives its UID."""

    uid: bytes
    ndef: bytes | None = None
    sak: int | None = None  # default: 0x00 with ndef (Type 2), 0x08 without
    _memory: bytes = field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.uid) not in (4, 7, 10):
            raise ValueError("uid must be 4, 7 or 10 bytes")
        if self.ndef is not None:
            object.__setattr__(self, "_memory", type2_memory(self.uid, self.ndef))

    @property
    def sel_res(self) -> int:
        if self.sak is not None:
            return self.sak & 0xFB
        return 0x00 if self.ndef is not None else 0x08

    @property
    def sens_res(self) -> bytes:
        size_bits = {4: 0x00, 7: 0x40, 10: 0x80}[len(self.uid)]
        return bytes([size_bits | 0x04, 0x00])

    def cascade(self) -> list[bytes]:
        """The SDD_RES of each cascade level (with cascade tag and BCC)."""
        uid = self.uid
        if len(uid) == 4:
            parts = [uid]
        elif len(uid) == 7:
            parts = [b"\x88" + uid[:3], uid[3:]]
        else:
            parts = [b"\x88" + uid[:3], b"\x88" + uid[3:6], uid[6:]]
        return [p + bytes([_bcc(p)]) for p in parts]

    @property
    def memory(self) -> bytes:
        return self._memory

    @property
    def ndef_end(self) -> int:
        """Offset just past the NDEF TLV in the memory image."""
        if self.ndef is None:
            return 0
        return 16 + _tlv_header_len(len(self.ndef)) + len(self.ndef)


def _tlv_header_len(n: int) -> int:
    return 2 if n < 255 else 4


def type2_memory(uid: bytes, ndef: bytes) -> bytes:
    """An NTAG21x-like memory image: UID pages, lock bytes, capability
    container (E1 10 size 00), then the NDEF TLV and a terminator."""
    head = bytes([uid[0], uid[1], uid[2], 0x88 ^ _bcc(uid[:3])])
    rest = uid[3:].ljust(4, b"\x00")[:4] if len(uid) <= 7 else uid[3:7]
    head += rest + bytes([_bcc(rest), 0x48, 0x00, 0x00])
    tlv = bytes([0x03, len(ndef)]) if len(ndef) < 255 else bytes([0x03, 0xFF]) + len(ndef).to_bytes(2, "big")
    data = tlv + ndef + b"\xfe"
    size = max(144, -(-len(data) // 8) * 8)
    if size > 255 * 8:
        raise ValueError("ndef message too large for a Type 2 tag image")
    cc = bytes([0xE1, 0x10, size // 8, 0x00])
    return head + cc + data.ljust(size, b"\x00") + bytes(16)  # + config pages


class TagEmulator:
    """Answers nfcpy udp readers on ``host:port`` as the card currently
    presented (none at first). Thread-safe; one background thread."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._card: EmulatedCard | None = None
        self._memory = bytearray()  # the presented card's memory, writable
        self._level = -1  # cascade level being resolved; -1 idle; len(cascade) active
        self._read_done = threading.Event()
        self._closing = threading.Event()
        self.selections = 0  # times a reader completed anticollision on a card
        self.reads = 0  # READ commands answered
        self._doubled_reads = 0  # fault injection, see inject()
        self._muted_reads = 0
        self._thread = threading.Thread(target=self._serve, name=f"nfc-emulator-{self.port}", daemon=True)
        self._thread.start()

    # -- control ---------------------------------------------------------
    def present(self, card: EmulatedCard) -> None:
        with self._lock:
            self._card = card
            self._memory = bytearray(card.memory)
            self._level = -1
            self._read_done.clear()

    def remove(self) -> None:
        with self._lock:
            self._card = None
            self._level = -1

    def inject(self, *, doubled_reads: int = 0, muted_reads: int = 0) -> None:
        """Faults of the air link as a reader sees them: the next
        ``doubled_reads`` READ answers are sent twice (a late answer that the
        reader will take for the next one's, as on a stalled udp link); the
        next ``muted_reads`` READs get no answer."""
        with self._lock:
            self._doubled_reads = doubled_reads
            self._muted_reads = muted_reads

    def memory(self) -> bytes:
        """The presented card's memory as the reader left it (WRITEs)."""
        with self._lock:
            return bytes(self._memory)

    def wait_read(self, timeout: float) -> bool:
        """True once a reader has selected the card and read its NDEF (or,
        for a UID-only card, selected it)."""
        return self._read_done.wait(timeout)

    def hold(self, card: EmulatedCard, hold_s: float, *, until_read_s: float | None = None) -> bool:
        """Present ``card``; remove it after ``hold_s`` (counted from when it
        was read if ``until_read_s`` is given: wait that long at most for the
        read first). Returns whether it was read."""
        self.present(card)
        try:
            read = self.wait_read(until_read_s) if until_read_s is not None else False
            time.sleep(hold_s)
            return read or self._read_done.is_set()
        finally:
            self.remove()

    def close(self) -> None:
        self._closing.set()
        self._thread.join(2.0)
        self._sock.close()

    def __enter__(self) -> TagEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the card --------------------------------------------------------
    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                ready, _, _ = select.select([self._sock], [], [], 0.05)
                if not ready:
                    continue
                datagram, addr = self._sock.recvfrom(1024)
            except OSError:
                return
            with self._lock:
                answer = self._answer(datagram)
                copies = 1
                if answer is not None and datagram.startswith(b"106A 30"):
                    if self._muted_reads > 0:
                        self._muted_reads -= 1
                        copies = 0
                    elif self._doubled_reads > 0:
                        self._doubled_reads -= 1
                        copies = 2
            for _ in range(copies if answer is not None else 0):
                try:
                    self._sock.sendto(b"106A " + hexlify(answer), addr)
                except OSError:
                    pass

    def _answer(self, datagram: bytes) -> bytes | None:
        card = self._card
        if datagram.startswith(b"RFOFF"):
            self._level = -1
            return None
        try:
            brty, payload = datagram.split()
            cmd = unhexlify(payload)
        except ValueError:
            return None
        if card is None or brty != b"106A" or not cmd:
            return None
        cascade = card.cascade()
        if cmd in (b"\x26", b"\x52"):  # SENS_REQ / ALL_REQ
            self._level = 0
            return card.sens_res
        if 0 <= self._level < len(cascade) and cmd[0] == (0x93, 0x95, 0x97)[self._level]:
            part = cascade[self._level]
            if cmd[1:] == b"\x20":  # SDD_REQ
                return part
            if cmd[1:2] == b"\x70" and cmd[2:] == part:  # SEL_REQ
                self._level += 1
                if self._level < len(cascade):
                    return bytes([card.sel_res | 0x04])
                self.selections += 1
                if card.ndef is None:
                    self._read_done.set()
                return bytes([card.sel_res])
            return None
        if self._level != len(cascade) or card.ndef is None:
            return None
        memory = self._memory
        if cmd[0] == 0x30 and len(cmd) == 2:  # READ: 4 pages, rolling over
            start = cmd[1] * 4
            if start >= len(memory):
                self._level = -1
                return _NAK
            self.reads += 1
            if start < card.ndef_end <= start + 16:
                self._read_done.set()
            return bytes((memory + memory)[start : start + 16])
        if cmd[0] == 0xA2 and len(cmd) == 6:  # WRITE one page (the UID pages are read-only)
            start = cmd[1] * 4
            if not 12 <= start <= len(memory) - 4:
                self._level = -1
                return _NAK
            memory[start : start + 4] = cmd[2:6]
            return b"\x0a"  # ACK
        if cmd == b"\x60" and card.uid[0] == 0x04:  # GET_VERSION
            return _NTAG213_VERSION
        self._level = -1  # a Type 2 tag goes mute on other commands
        return _NAK


def present_card(
    port: int,
    uid: bytes,
    ndef: bytes | None = None,
    hold_s: float = 0.5,
    *,
    host: str = "127.0.0.1",
    until_read_s: float | None = None,
) -> bool:
    """Blocking: bind ``host:port``, present the card for ``hold_s`` (after
    it was read, if ``until_read_s``), then remove it. Returns whether a
    reader read it."""
    with TagEmulator(port, host) as emulator:
        return emulator.hold(EmulatedCard(uid=uid, ndef=ndef), hold_s, until_read_s=until_read_s)


async def present_card_async(
    port: int,
    uid: bytes,
    ndef: bytes | None = None,
    hold_s: float = 0.5,
    *,
    host: str = "127.0.0.1",
    until_read_s: float | None = None,
) -> bool:
    return await asyncio.to_thread(present_card, port, uid, ndef, hold_s, host=host, until_read_s=until_read_s)


def serve_type2_with_nfcpy(port: int, card: EmulatedCard, hold_s: float, *, host: str = "127.0.0.1") -> int:
    """The same Type 2 tag, served by nfcpy's ``ContactlessFrontend.listen``
    and ``exchange`` (raw READ responder). Returns the READs answered."""
    import nfc
    import nfc.clf

    if card.ndef is None:
        raise ValueError("serve_type2_with_nfcpy needs a card with ndef")
    memory = card.memory
    reads = 0
    deadline = time.monotonic() + hold_s
    with nfc.ContactlessFrontend(f"udp:{host}:{port}") as clf:
        while time.monotonic() < deadline:
            target = nfc.clf.LocalTarget("106A")
            target.sens_res = bytearray(card.sens_res)
            target.sdd_res = bytearray(card.uid)
            target.sel_res = bytearray([card.sel_res])
            activated = clf.listen(target, max(0.05, deadline - time.monotonic()))
            if activated is None:
                continue
            cmd = activated.tt2_cmd
            while cmd is not None and time.monotonic() < deadline:
                if cmd[0] == 0x30 and len(cmd) == 2 and cmd[1] * 4 < len(memory):
                    reads += 1
                    rsp = (memory + memory)[cmd[1] * 4 : cmd[1] * 4 + 16]
                else:
                    rsp = _NAK
                try:
                    cmd = clf.exchange(rsp, timeout=max(0.05, deadline - time.monotonic()))
                except nfc.clf.CommunicationError:
                    break
    return reads
