"""``borne tap``: present a card to a running station's emulated reader.

The station's reader polls ``udp:HOST:PORT``; this binds that port as the
card, waits for the reader to read it (up to ``wait_s``), keeps it on the
reader ``hold_s`` more, then takes it away. A credential file is the NDEF
message written by ``provisioning.cards issue-card --out FILE`` (raw bytes);
the card is then a Type 2 tag carrying it, otherwise a UID-only card.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from integrations.nfc.emulator import EmulatedCard, TagEmulator

DEFAULT_READER = "udp:127.0.0.1:54321"
MAX_CREDENTIAL_BYTES = 2040  # the largest Type 2 data area we emulate


class TapInputError(ValueError):
    """Bad input for a tap; the message is one line naming the culprit."""


def parse_reader_address(address: str) -> tuple[str, int]:
    """``udp:HOST:PORT``, ``HOST:PORT`` or ``PORT`` → (host, port)."""
    parts = address.split(":")
    if parts[0] == "udp":
        parts = parts[1:]
    host = "127.0.0.1"
    if len(parts) == 2:
        host = parts[0] or host
    elif len(parts) != 1:
        raise TapInputError(f"reader address {address!r}: expected udp:HOST:PORT")
    try:
        port = int(parts[-1])
    except ValueError:
        raise TapInputError(f"reader address {address!r}: port is not a number") from None
    if not 0 < port < 65536:
        raise TapInputError(f"reader address {address!r}: port out of range")
    return ("127.0.0.1" if host == "localhost" else host), port


def parse_uid(uid_hex: str) -> bytes:
    cleaned = uid_hex.replace(":", "").replace(" ", "")
    try:
        uid = bytes.fromhex(cleaned)
    except ValueError:
        raise TapInputError(f"UID {uid_hex!r}: not hexadecimal") from None
    if len(uid) not in (4, 7, 10):
        raise TapInputError(f"UID {uid_hex!r}: must be 4, 7 or 10 bytes, got {len(uid)}")
    return uid


def load_credential(path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise TapInputError(f"credential file {path}: {err.strerror or err}") from None
    if not data or len(data) > MAX_CREDENTIAL_BYTES:
        raise TapInputError(f"credential file {path}: expected 1..{MAX_CREDENTIAL_BYTES} bytes of NDEF")
    return data


def present(
    reader_address: str,
    uid_hex: str,
    credential_file: str | None,
    *,
    hold_s: float = 0.3,
    wait_s: float = 5.0,
) -> bool:
    """Present the card; True if the reader read it within ``wait_s``.
    Raises :class:`TapInputError` on bad input, OSError when the port
    cannot be bound (another tap in progress)."""
    host, port = parse_reader_address(reader_address)
    uid = parse_uid(uid_hex)
    ndef = load_credential(credential_file) if credential_file else None
    card = EmulatedCard(uid=uid, ndef=ndef)
    with TagEmulator(port, host) as emulator:
        return emulator.hold(card, hold_s, until_read_s=wait_s)


def tap(
    reader_address: str,
    uid_hex: str,
    credential_file: str | None,
    *,
    hold_s: float = 0.3,
    wait_s: float = 5.0,
) -> int:
    """``borne tap``: present the card and return the exit code: 0 read, 1
    not read in time (or the port is busy), 2 bad input; a one-line reason
    on stderr."""
    try:
        read = present(reader_address, uid_hex, credential_file, hold_s=hold_s, wait_s=wait_s)
    except TapInputError as err:
        print(f"borne tap: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"borne tap: cannot present a card on {reader_address}: {err.strerror or err}", file=sys.stderr)
        return 1
    if not read:
        print(f"borne tap: no reader read the card on {reader_address} within {wait_s:g} s", file=sys.stderr)
        return 1
    print("card read")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="borne tap", description="Present a card to a running demo's reader.")
    parser.add_argument("uid", help="card UID in hex (4, 7 or 10 bytes), e.g. 08A1B2C3")
    parser.add_argument("--credential", metavar="FILE", help="NDEF file from 'issue-card --out' (a signed card)")
    parser.add_argument("--reader", default=DEFAULT_READER, help=f"the reader's udp address (default {DEFAULT_READER})")
    parser.add_argument("--hold", type=float, default=0.3, help="seconds the card stays after it was read")
    parser.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the reader")
    args = parser.parse_args(argv)
    return tap(args.reader, args.uid, args.credential, hold_s=args.hold, wait_s=args.wait)


if __name__ == "__main__":
    raise SystemExit(main())
