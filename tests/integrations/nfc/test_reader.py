"""NfcReader against emulated cards, nfcpy's udp driver on the reader side.

The cards are served by ``TagEmulator`` (nfcpy's udp wire protocol on one
persistent socket) and, in one test, by nfcpy's own ``listen``/``exchange``.
NDEF reads over the emulation garble about 1 in 500: tests that expect a
valid signed card allow one more tap.
"""

from __future__ import annotations

import asyncio
import errno
import threading
import time
from typing import Any

import nfc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from integrations.nfc import tap as tap_cli
from integrations.nfc.emulator import EmulatedCard, TagEmulator, serve_type2_with_nfcpy
from integrations.nfc.reader import NfcReader
from provisioning import cards as provisioning
from station.clock import SystemClock
from station.config import ReaderSection
from station.credentials import Credential, check_card, encode_signed_card, read_credential
from station.errors import PermanentIntegrationError, TransientIntegrationError
from station.model import CardKind, CardPresented, Reason
from station.taps import TapGate

from .conftest import Running, free_udp_port, make_reader, running, tap

pytestmark = pytest.mark.timeout(60)

CARD_KEY = b"test-card-key"
ISSUER = Ed25519PrivateKey.generate()
KEYS = {"th-1": ISSUER.public_key()}
UID = bytes.fromhex("08A1B2C3D4E5F6")  # 7-byte, not NXP (0x04): nfcpy does not probe it


def signed_card(uid: bytes = UID, serial: int = 3, member: str = "M-0042", key: Ed25519PrivateKey = ISSUER) -> EmulatedCard:
    return EmulatedCard(uid=uid, ndef=encode_signed_card(key, "th-1", member, serial, uid))


def credential(card: CardPresented) -> Credential:
    return read_credential(card, card_key=CARD_KEY, issuer_keys=KEYS)


async def tap_and_read(emu: TagEmulator, run: Running, card: EmulatedCard, *, expect_signed: bool = True) -> Credential:
    """One tap; one more if the emulated link garbled a read that should be good."""
    for attempt in range(2):
        assert await tap(emu, card)
        cred = credential(await run.next_card())
        if not expect_signed or cred.signed is not None or attempt:
            return cred
    raise AssertionError("unreachable")


async def test_uid_only_card(emulator: TagEmulator) -> None:
    async with running(make_reader(emulator.port)) as run:
        assert await tap(emulator, EmulatedCard(uid=bytes.fromhex("11223344")))
        card = await run.next_card()
    assert card.uid == bytes.fromhex("11223344")
    assert card.ndef is None and card.ndef_error is None
    assert card.detected_at > 0
    cred = credential(card)
    assert cred.signed is None and cred.error is None
    assert check_card(cred, CardKind.UID, 1) is None
    assert check_card(cred, None, None) is Reason.UNKNOWN_CARD
    assert emulator.reads == 0  # a UID-only card is never activated


@pytest.mark.parametrize("uid", [UID, bytes.fromhex("04A1B2C3D4E5F6"), bytes.fromhex("0A0B0C0D")], ids=["7B", "NXP", "4B"])
async def test_signed_card(emulator: TagEmulator, uid: bytes) -> None:
    async with running(make_reader(emulator.port)) as run:
        cred = await tap_and_read(emulator, run, signed_card(uid))
    assert cred.error is None, cred.detail
    assert cred.signed is not None and (cred.signed.member_id, cred.signed.serial) == ("M-0042", 3)
    assert check_card(cred, CardKind.SIGNED, 3, roster_member_id="M-0042") is None


async def test_signed_card_served_by_nfcpy_listen() -> None:
    port = free_udp_port()
    card = signed_card()
    served = asyncio.create_task(asyncio.to_thread(serve_type2_with_nfcpy, port, card, 2.5), name="nfcpy-card")
    try:
        async with running(make_reader(port, removal_misses=3)) as run:
            creds = [credential(await run.next_card())]
            if creds[0].signed is None:  # one retry: the link may garble a read
                creds.append(credential(await run.next_card()))
    finally:
        reads = await served
    assert creds[-1].signed is not None and creds[-1].signed.member_id == "M-0042"
    assert reads >= 7


async def test_forged_signature(emulator: TagEmulator) -> None:
    forged = signed_card(key=Ed25519PrivateKey.generate())
    async with running(make_reader(emulator.port)) as run:
        cred = await tap_and_read(emulator, run, forged, expect_signed=False)
        if cred.detail != "bad signature":  # a garbled read: one more tap
            cred = await tap_and_read(emulator, run, forged, expect_signed=False)
    assert cred.error is Reason.INVALID_CREDENTIAL and cred.detail == "bad signature"
    assert check_card(cred, CardKind.SIGNED, 3) is Reason.INVALID_CREDENTIAL


async def test_uid_copy_of_a_signed_card(emulator: TagEmulator) -> None:
    async with running(make_reader(emulator.port)) as run:
        assert await tap(emulator, EmulatedCard(uid=UID))  # same UID, no record (a Classic clone)
        cred = credential(await run.next_card())
    assert cred.uid_ref == credential(CardPresented(uid=UID)).uid_ref
    assert check_card(cred, CardKind.SIGNED, 3) is Reason.SIGNED_CARD_REQUIRED


async def test_revoked_serial(emulator: TagEmulator) -> None:
    async with running(make_reader(emulator.port)) as run:
        cred = await tap_and_read(emulator, run, signed_card(serial=3))
    assert cred.signed is not None
    assert check_card(cred, CardKind.SIGNED, 4) is Reason.CARD_REVOKED


async def test_record_copied_onto_another_card(emulator: TagEmulator) -> None:
    other = bytes.fromhex("08A1B2C3D4E5F7")
    copy = EmulatedCard(uid=other, ndef=signed_card().ndef)
    async with running(make_reader(emulator.port)) as run:
        cred = await tap_and_read(emulator, run, copy, expect_signed=False)
        if "another card" not in cred.detail:
            cred = await tap_and_read(emulator, run, copy, expect_signed=False)
    assert cred.error is Reason.INVALID_CREDENTIAL and "another card" in cred.detail


async def test_card_held_5_s_is_one_presentation(emulator: TagEmulator) -> None:
    async with running(make_reader(emulator.port)) as run:
        assert await tap(emulator, signed_card(), hold_s=5.0)
        first = await run.next_card(timeout=1)
        await asyncio.sleep(1.2)  # the reader notices the removal (one missed 1 s udp poll)
        assert run.cards.empty()
        assert await tap(emulator, signed_card())  # taken away and tapped again: a new one
        second = await run.next_card(timeout=3)
    assert first.uid == second.uid == UID
    assert emulator.selections >= 10  # it was polled all along


async def test_garbled_read_is_read_again(emulator: TagEmulator) -> None:
    emulator.inject(doubled_reads=1)  # one late answer, taken for the next READ's
    async with running(make_reader(emulator.port)) as run:
        assert await tap(emulator, signed_card())
        card = await run.next_card()
    assert card.ndef_error is None
    assert credential(card).signed is not None
    assert emulator.selections >= 2  # sensed again (fresh socket) for the second read


async def test_unreadable_ndef_is_a_reason_not_a_crash(emulator: TagEmulator) -> None:
    emulator.inject(muted_reads=1000)
    async with running(make_reader(emulator.port)) as run:
        emulator.present(signed_card())
        card = await run.next_card()
        emulator.remove()
        emulator.inject()
        await asyncio.sleep(1.2)  # the reader notices the removal
        assert await tap(emulator, signed_card())  # and still works
        again = await run.next_card()
    assert card.ndef is None and card.ndef_error
    cred = credential(card)
    assert cred.error is Reason.INVALID_CREDENTIAL and cred.detail.startswith("ndef unreadable")
    assert check_card(cred, CardKind.SIGNED, 3) is Reason.INVALID_CREDENTIAL
    assert check_card(cred, CardKind.UID, 3) is None
    assert again.uid == UID


async def test_unknown_card_flood_locks_the_reader_out(emulator: TagEmulator) -> None:
    """What the station does with each presentation, on a real clock."""
    gate = TapGate(5.0, 10, 30.0, SystemClock())
    member = signed_card(uid=bytes.fromhex("08000000000001"))
    roster = {credential(CardPresented(uid=member.uid)).uid_ref: (CardKind.SIGNED, 3)}
    outcomes: list[Reason | None] = []
    lockouts: list[int] = []
    async with running(make_reader(emulator.port)) as run:
        for i in range(13):
            card = member if i == 12 else EmulatedCard(uid=bytes([0x08, 0, 0, 0, 0, 0x10, i]))
            assert await tap(emulator, card, hold_s=0.02)
            cred = credential(await run.next_card())
            kind, serial = roster.get(cred.uid_ref, (None, None))
            reason = gate.admit(cred.uid_ref) or check_card(cred, kind, serial)
            if reason in (Reason.UNKNOWN_CARD, Reason.INVALID_CREDENTIAL) and gate.record_refusal():
                lockouts.append(i)
            outcomes.append(reason)
    assert outcomes[:11] == [Reason.UNKNOWN_CARD] * 11
    assert lockouts == [10]  # the 11th unknown card within a minute
    assert outcomes[11:] == [Reason.RATE_LIMITED, Reason.RATE_LIMITED]  # even a member, while locked
    assert gate.locked_until is not None and gate.unknown_rate_per_min() == 11


# --- faults ---------------------------------------------------------------------------------


async def test_reader_that_cannot_be_opened() -> None:
    reader = NfcReader(ReaderSection(device="tty:USB97:pn532"))
    started = time.monotonic()
    with pytest.raises(TransientIntegrationError, match="cannot open"):
        await reader.run(_never)
    assert time.monotonic() - started < 2


async def test_not_an_nfcpy_device() -> None:
    with pytest.raises(PermanentIntegrationError):
        await NfcReader(ReaderSection(device="simulated")).run(_never)


class _Unpluggable:
    """A real ContactlessFrontend that can be 'unplugged': its next call then
    fails as nfcpy's USB transport does (IOError EIO / ENODEV). The udp
    driver cannot lose its device, so this one fault is injected."""

    def __init__(self, path: str, plugged: threading.Event) -> None:
        if not plugged.is_set():
            raise OSError(errno.ENODEV, "No such device")
        self._clf = nfc.ContactlessFrontend(path)
        self._plugged = plugged

    def sense(self, *args: Any, **kwargs: Any) -> Any:
        if not self._plugged.is_set():
            raise OSError(errno.EIO, "Input/output error")
        return self._clf.sense(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._clf, name)


async def test_reader_lost_and_back(emulator: TagEmulator) -> None:
    plugged = threading.Event()
    plugged.set()
    reader = make_reader(emulator.port, frontend_factory=lambda path: _Unpluggable(path, plugged))
    cards: list[CardPresented] = []

    async def on_card(card: CardPresented) -> None:
        cards.append(card)

    task = asyncio.create_task(reader.run(on_card), name="nfc-reader-run")
    assert await tap(emulator, EmulatedCard(uid=bytes.fromhex("11223344")))
    plugged.clear()
    with pytest.raises(TransientIntegrationError, match="lost") as lost:
        await asyncio.wait_for(task, 3)
    assert isinstance(lost.value.__cause__, OSError)
    with pytest.raises(TransientIntegrationError, match="cannot open"):  # still unplugged
        await reader.run(on_card)
    plugged.set()  # back: the supervisor's next restart works
    async with running(reader) as run:
        assert await tap(emulator, EmulatedCard(uid=bytes.fromhex("55667788")))
        back = await run.next_card()
    assert [c.uid.hex() for c in cards] == ["11223344"]
    assert back.uid.hex() == "55667788"


async def test_cancel_stops_the_thread_promptly(emulator: TagEmulator) -> None:
    async with running(make_reader(emulator.port)) as run:
        await asyncio.sleep(0.4)  # no card: the udp poll waits 1 s for an answer
        started = time.monotonic()
        run.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run.task
        elapsed = time.monotonic() - started
    assert elapsed < 1.0  # typically ~0.05 s: the udp poll is woken up
    assert not [t for t in threading.enumerate() if t.name == "nfc-reader"]


async def test_feedback_drives_led_and_buzzer_where_the_driver_has_them(emulator: TagEmulator) -> None:
    calls: list[str] = []

    def with_indicators(path: str) -> Any:
        clf = nfc.ContactlessFrontend(path)  # the udp driver's are no-ops: record them
        clf.device.turn_on_led_and_buzzer = lambda: calls.append("on")
        clf.device.turn_off_led_and_buzzer = lambda: calls.append("off")
        return clf

    reader = make_reader(emulator.port, frontend_factory=with_indicators)
    await reader.feedback(True)  # not running: a no-op
    async with running(reader) as run:
        emulator.present(EmulatedCard(uid=bytes.fromhex("11223344")))
        await run.next_card()
        await reader.feedback(False)
        for _ in range(100):
            if len(calls) == 4:
                break
            await asyncio.sleep(0.02)
        emulator.remove()
    assert calls == ["on", "off", "on", "off"]  # refused: two beeps


async def test_udp_feedback_is_a_no_op(emulator: TagEmulator) -> None:
    async with running(make_reader(emulator.port)) as run:
        assert await tap(emulator, EmulatedCard(uid=bytes.fromhex("11223344")))
        await run.next_card()
        await run.reader.feedback(True)
        assert await tap(emulator, EmulatedCard(uid=bytes.fromhex("55667788")))
        assert (await run.next_card()).uid.hex() == "55667788"


# --- borne tap and card issuing -------------------------------------------------------------------


async def test_borne_tap_presents_a_signed_card(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_udp_port()
    credential_file = tmp_path / "card.ndef"
    credential_file.write_bytes(signed_card().ndef or b"")
    async with running(make_reader(port)) as run:
        rc = await asyncio.to_thread(tap_cli.main, [UID.hex(), "--credential", str(credential_file), "--reader", f"udp:127.0.0.1:{port}"])
        assert rc == 0
        cred = credential(await run.next_card())
        if cred.signed is None:  # garbled read: tap again
            await asyncio.to_thread(tap_cli.main, [UID.hex(), "--credential", str(credential_file), "--reader", f"udp:127.0.0.1:{port}"])
            cred = credential(await run.next_card())
    assert cred.signed is not None and cred.signed.member_id == "M-0042"


@pytest.mark.parametrize(
    ("argv", "culprit"),
    [(["zz"], "not hexadecimal"), (["112233"], "4, 7 or 10 bytes"), (["11223344", "--credential", "/nonexistent"], "/nonexistent"), (["11223344", "--reader", "udp:x:y"], "port")],
)
def test_borne_tap_bad_input(argv: list[str], culprit: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert tap_cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert culprit in err and "\n" not in err


async def test_issue_card_writes_a_blank_ntag_that_the_reader_accepts(emulator: TagEmulator, tmp_path: Any) -> None:
    key_file = tmp_path / "issuer.json"
    assert provisioning.main(["new-issuer-key", "--out", str(key_file), "--key-id", "th-9"]) == 0
    issuer = provisioning.load_issuer_key(key_file)
    blank = EmulatedCard(uid=UID, ndef=b"")  # a formatted NTAG with an empty NDEF TLV
    emulator.present(blank)
    argv = ["issue-card", "--member", "M-7", "--serial", "2", "--uid", UID.hex(), "--key", str(key_file), "--write", f"udp:127.0.0.1:{emulator.port}", "--timeout", "5"]
    assert await asyncio.to_thread(provisioning.main, argv) == 0
    written = emulator.memory()
    emulator.remove()
    keys = {"th-9": issuer.private_key.public_key()}
    async with running(make_reader(emulator.port)) as run:
        for _ in range(2):
            # the written card, as the emulator now holds it
            card = EmulatedCard(uid=UID, ndef=_ndef_in(written))
            assert await tap(emulator, card)
            cred = read_credential(await run.next_card(), card_key=CARD_KEY, issuer_keys=keys)
            if cred.signed is not None:
                break
    assert cred.signed is not None and (cred.signed.member_id, cred.signed.serial, cred.signed.key_id) == ("M-7", 2, "th-9")


def _ndef_in(memory: bytes) -> bytes:
    assert memory[16] == 0x03 and memory[17] < 0xFF
    return memory[18 : 18 + memory[17]]


def test_issue_card_bad_input(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "issuer.json"
    assert provisioning.main(["new-issuer-key", "--out", str(key_file)]) == 0
    assert provisioning.main(["new-issuer-key", "--out", str(key_file)]) == 2  # exists
    base = ["issue-card", "--member", "M-1", "--key", str(key_file), "--out", str(tmp_path / "c.ndef")]
    capsys.readouterr()
    for extra, culprit in ((["--serial", "1", "--uid", "0102"], "--uid"), (["--serial", "-1", "--uid", UID.hex()], "--serial")):
        assert provisioning.main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert culprit in err and "\n" not in err
    assert provisioning.main(["issue-card", "--member", "M-1", "--serial", "1", "--uid", UID.hex(), "--key", str(tmp_path / "nope.json"), "--out", "x"]) == 2
    assert provisioning.main(base + ["--serial", "1", "--uid", UID.hex()]) == 0
    # Ed25519 signatures are deterministic: the file is exactly the record
    assert (tmp_path / "c.ndef").read_bytes() == provisioning.issue_card(provisioning.load_issuer_key(key_file), "M-1", 1, UID)


@pytest.mark.hardware
async def test_real_reader_opens_and_stops(request: pytest.FixtureRequest) -> None:
    device = request.config.getoption("--reader")
    if not device:
        pytest.skip("no --reader DEVICE")
    reader = NfcReader(ReaderSection(device=device))
    task = asyncio.create_task(reader.run(_never), name="nfc-reader-run")
    await asyncio.sleep(1.0)
    assert not task.done()
    task.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0


async def _never(card: CardPresented) -> None:
    raise AssertionError(f"unexpected card {card}")
