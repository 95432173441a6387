"""The station's NFC reader: nfcpy in a dedicated thread, bridged to asyncio.

One thread owns the ``ContactlessFrontend`` for as long as :meth:`run` runs.
It polls only the configured technologies; for each card it reads the UID
and, on a Type 2 (NFC-A, SAK 0x00) or Type 3 (FeliCa) tag, the raw NDEF
message; then it waits for the card to leave, so a card held on the reader
is one presentation. Presentations are handed to the event loop with
``call_soon_threadsafe`` and ``on_card`` is awaited there, one at a time.

Faults: a reader that cannot be opened or that fails while polling makes
:meth:`run` raise :class:`TransientIntegrationError` (the supervisor journals
``reader.fault`` and restarts it with back-off); a device string nfcpy does
not know raises :class:`PermanentIntegrationError`. A card that fails to
read is never a fault: it is read again once, then presented with
``ndef_error``. No nfcpy exception leaves this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import queue
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from station.clock import Clock, SystemClock
from station.config import ReaderSection
from station.credentials import mask_uid
from station.errors import PermanentIntegrationError, TransientIntegrationError
from station.model import CardPresented

log = logging.getLogger(__name__)

_DEVICE_PREFIXES = ("usb", "tty:", "com:", "udp")
_FEEDBACK_BEEP_S = 0.15
_STOP_TIMEOUT_S = 5.0


class _CardReadFailed(Exception):
    """This card could not be read (garbled, timed out, removed)."""


@dataclass(frozen=True, slots=True)
class _Fault:
    error: BaseException
    opening: bool


_STOPPED = object()


def uid_of(target: Any) -> bytes | None:
    """The UID (NFCID1, NFCID0 or IDm) of an nfcpy RemoteTarget."""
    brty = target.brty
    if brty.endswith("A"):
        if target.sdd_res:
            return bytes(target.sdd_res)
        if target.rid_res:  # Type 1 tag
            return bytes(target.rid_res[2:6])
    elif brty.endswith("B") and target.sensb_res:
        return bytes(target.sensb_res[1:5])
    elif brty.endswith("F") and target.sensf_res:
        return bytes(target.sensf_res[1:9])
    return None


def reads_ndef(target: Any) -> bool:
    """Type 2 (SAK 0x00; MIFARE Classic's 0x08/0x18 are not) or Type 3."""
    if target.brty.endswith("F"):
        return True
    if target.brty.endswith("A") and target.sel_res and target.sdd_res:
        return target.sel_res[0] & 0xFB == 0x00
    return False


def read_type2_ndef(tag: Any) -> bytes | None:
    """The NDEF message of an activated Type 2 tag, through READ commands;
    None when the tag holds none. Raises on anything inconsistent: a
    failed READ, a TLV running past the data area, or pages 0-3 read
    differently at the start and the end (the sign of a late answer taken
    for another one)."""
    import nfc.tag.tt2

    try:
        head = bytes(tag.read(0))
        cc = head[12:16]
        if cc[0] != 0xE1 or cc[1] >> 4 != 1 or cc[3] >> 4 != 0:
            return None  # not NDEF formatted, other mapping version, or read-protected
        end = 16 + cc[2] * 8
        memory = bytearray(head)

        def need(stop: int) -> None:
            if stop > end:
                raise _CardReadFailed("ndef tlv runs past the data area")
            while len(memory) < stop:
                memory.extend(tag.read(len(memory) // 4))

        offset = 16
        value: bytes | None = None
        while offset < end:
            need(offset + 1)
            tlv = memory[offset]
            if tlv == 0x00:
                offset += 1
                continue
            if tlv == 0xFE:
                break
            need(offset + 2)
            length, header = memory[offset + 1], 2
            if length == 0xFF:
                need(offset + 4)
                length, header = int.from_bytes(memory[offset + 2 : offset + 4], "big"), 4
            need(offset + header + length)
            if tlv == 0x03:
                value = bytes(memory[offset + header : offset + header + length])
                break
            if tlv not in (0x01, 0x02, 0xFD):
                raise _CardReadFailed(f"unknown tlv {tlv:#04x} in the data area")
            offset += header + length  # lock control, memory control, proprietary
        if bytes(tag.read(0)) != head:
            raise _CardReadFailed("tag memory read inconsistently")
        return value
    except nfc.tag.tt2.Type2TagCommandError as err:
        raise _CardReadFailed(f"type 2 read failed: {err}") from err


class NfcReader:
    """:class:`~station.ports.CardReader` on an nfcpy device."""

    def __init__(
        self,
        section: ReaderSection,
        *,
        clock: Clock | None = None,
        removal_misses: int = 2,
        frontend_factory: Callable[[str], Any] | None = None,
    ) -> None:
        self._device = section.device
        self._technologies: Sequence[str] = tuple(section.technologies)
        self._interval_s = section.interval_s
        self._clock = clock or SystemClock()
        self._removal_misses = max(1, removal_misses)
        self._frontend_factory = frontend_factory
        self._feedback: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._running = False
        self._clf: Any = None
        self._failures = 0

    # -- the port --------------------------------------------------------
    async def run(self, on_card: Callable[[CardPresented], Awaitable[None]]) -> None:
        if not self._device.startswith(_DEVICE_PREFIXES):
            raise PermanentIntegrationError(f"reader.device {self._device!r} is not an nfcpy device string")
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        while not self._feedback.empty():  # left over from a previous run
            self._feedback.get_nowait()

        def post(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(inbox.put_nowait, item)

        thread = threading.Thread(target=self._thread_main, args=(stop, post), name="nfc-reader", daemon=True)
        self._running = True
        stopped = False
        thread.start()
        try:
            while True:
                item = await inbox.get()
                if item is _STOPPED:
                    stopped = True
                    raise TransientIntegrationError(f"nfc reader {self._device} stopped")
                if isinstance(item, _Fault):
                    self._raise_fault(item)
                self._failures = 0
                await on_card(item)
        finally:
            self._running = False
            stop.set()
            deadline = loop.time() + _STOP_TIMEOUT_S
            while not stopped:  # the thread ends within one poll; wake it if it waits on udp
                if loop.time() > deadline:
                    log.warning("nfc reader thread did not stop within %.0f s; left to finish", _STOP_TIMEOUT_S)
                    break
                self._wake()
                try:
                    stopped = await asyncio.wait_for(inbox.get(), 0.05) is _STOPPED
                except TimeoutError:
                    pass
            if stopped:
                thread.join(0.2)  # it has closed the device and posted its last word: returning

    async def feedback(self, accepted: bool) -> None:
        """Beep/flash once for accepted, twice for refused, on readers whose
        nfcpy driver has LED and buzzer (ACR122U); a no-op on the others.
        Done by the reader thread between polls; never waits for it."""
        if self._running:
            self._feedback.put(accepted)

    # -- faults ----------------------------------------------------------
    def _raise_fault(self, fault: _Fault) -> None:
        err = fault.error
        if not fault.opening:
            self._failures = 0  # lost after it worked: a first failure again
        self._failures += 1
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        what = "cannot open" if fault.opening else "lost"
        log.log(level, "nfc reader %s: %s (%s)", what, self._device, err)
        if isinstance(err, PermanentIntegrationError):
            raise err
        raise TransientIntegrationError(f"nfc reader {self._device}: {what}: {err}") from err

    # -- the thread ------------------------------------------------------
    def _thread_main(self, stop: threading.Event, post: Callable[[Any], None]) -> None:
        clf = None
        try:
            try:
                clf = self._open()
            except Exception as err:  # noqa: BLE001 - converted, never escapes
                post(_Fault(err, opening=True))
                return
            self._clf = clf
            log.info("nfc reader open: %s", self._device)
            try:
                self._poll(clf, stop, post)
            except Exception as err:  # noqa: BLE001 - converted, never escapes
                if not stop.is_set():
                    if not isinstance(err, OSError | PermanentIntegrationError):
                        log.error("nfc reader thread failed", exc_info=err)
                    post(_Fault(err, opening=False))
        finally:
            self._clf = None
            if clf is not None:
                with contextlib.suppress(Exception):
                    clf.close()
            post(_STOPPED)

    def _open(self) -> Any:
        if self._frontend_factory is not None:
            return self._frontend_factory(self._device)
        import nfc

        try:
            return nfc.ContactlessFrontend(self._device)
        except (ValueError, TypeError) as err:
            raise PermanentIntegrationError(f"reader.device {self._device!r}: {err}") from err
        except OSError as err:
            if err.errno == errno.ENODEV:
                raise OSError(err.errno, f"no reader found at {self._device}") from err
            raise

    def _targets(self) -> list[Any]:
        import nfc.clf

        return [nfc.clf.RemoteTarget(brty) for brty in self._technologies]

    def _sense(self, clf: Any) -> Any:
        import nfc.clf

        try:
            return clf.sense(*self._targets(), iterations=1)
        except nfc.clf.CommunicationError as err:
            log.debug("sense: %s", err)
            return None
        except nfc.clf.UnsupportedTargetError as err:
            raise PermanentIntegrationError(f"reader.technologies {list(self._technologies)}: {err}") from err

    def _poll(self, clf: Any, stop: threading.Event, post: Callable[[Any], None]) -> None:
        pending = None
        while not stop.is_set():
            self._give_feedback(clf)
            target = pending or self._sense(clf)
            pending = None
            if target is None:
                stop.wait(self._interval_s)
                continue
            presented = self.read_target(clf, target)
            if presented is None:  # no UID we can use (a Type 1 tag without RID...)
                stop.wait(self._interval_s)
                continue
            log.debug("card %s presented", mask_uid(presented.uid))
            post(presented)
            pending = self._wait_removal(clf, presented.uid, stop)

    def read_target(self, clf: Any, target: Any) -> CardPresented | None:
        """The presentation of a sensed target: UID, and the NDEF message of
        a Type 2/3 tag (read again once on failure)."""
        detected_at = self._clock.monotonic()
        uid = uid_of(target)
        if uid is None:
            return None
        if not reads_ndef(target):
            return CardPresented(uid=uid, detected_at=detected_at)
        error = "not read"
        for attempt in range(2):
            if attempt:
                target = self._resense(clf, target)
                if target is None or uid_of(target) != uid:
                    error = f"{error}; card gone before the second read"
                    break
            try:
                return CardPresented(uid=uid, ndef=self._read_ndef(clf, target), detected_at=detected_at)
            except _CardReadFailed as err:
                error = str(err)
                log.debug("card %s: ndef read %d failed: %s", mask_uid(uid), attempt + 1, err)
        return CardPresented(uid=uid, ndef_error=error, detected_at=detected_at)

    def _resense(self, clf: Any, target: Any) -> Any:
        import nfc.clf

        again = nfc.clf.RemoteTarget(target.brty)
        if target.brty.endswith("A"):
            again.sel_req = bytearray(target.sdd_res)
        try:
            return clf.sense(again, iterations=1)
        except nfc.clf.CommunicationError:
            return None

    @staticmethod
    def _read_ndef(clf: Any, target: Any) -> bytes | None:
        import nfc.clf
        import nfc.tag
        import nfc.tag.tt2

        try:
            tag = nfc.tag.activate(clf, target)
            if tag is None:
                raise _CardReadFailed("tag did not activate")
            if isinstance(tag, nfc.tag.tt2.Type2Tag):
                return read_type2_ndef(tag)
            ndef = tag.ndef  # Type 3: nfcpy's reader (a failure reads as no NDEF)
            return bytes(ndef.octets) if ndef is not None else None
        except (nfc.clf.CommunicationError, nfc.tag.TagCommandError) as err:
            raise _CardReadFailed(f"{type(err).__name__}: {err}") from err

    def _wait_removal(self, clf: Any, uid: bytes, stop: threading.Event) -> Any:
        """Re-sense until the card has been missed ``removal_misses`` times in
        a row; a different card found meanwhile is returned (it is the next
        presentation)."""
        misses = 0
        while not stop.wait(self._interval_s):
            self._give_feedback(clf)
            found = self._sense(clf)
            if found is None:
                misses += 1
                if misses >= self._removal_misses:
                    return None
            elif uid_of(found) == uid:
                misses = 0
            else:
                return found
        return None

    def _give_feedback(self, clf: Any) -> None:
        while True:
            try:
                accepted = self._feedback.get_nowait()
            except queue.Empty:
                return
            device = getattr(clf, "device", None)
            on = getattr(device, "turn_on_led_and_buzzer", None)
            off = getattr(device, "turn_off_led_and_buzzer", None)
            if on is None or off is None:
                continue
            try:
                for _ in range(1 if accepted else 2):
                    on()
                    time.sleep(_FEEDBACK_BEEP_S)
                    off()
            except Exception as err:  # noqa: BLE001 - feedback is best effort
                log.debug("reader feedback failed: %s", err)

    def _wake(self) -> None:
        """Cut short a udp sense waiting for a card that is not there (the
        udp driver waits 1 s per unanswered poll): tell the reader's socket
        the field is off. Other drivers poll briefly and need no wake-up."""
        device = getattr(self._clf, "device", None)
        sock = getattr(device, "socket", None)
        if not isinstance(sock, socket.socket) or type(device).__module__ != "nfc.clf.udp":
            return
        with contextlib.suppress(OSError, ValueError):
            host, port = sock.getsockname()[:2]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as waker:
                waker.sendto(b"RFOFF", ("127.0.0.1" if host == "0.0.0.0" else host, port))
