"""Town-hall tool: issuing keys and signed member cards.

    python -m provisioning.cards new-issuer-key --key-id townhall-2026 --out issuer.json
    python -m provisioning.cards issue-card --member M-0042 --serial 1 --uid 04A1B2C3D4E5F6 \\
        --key issuer.json --out card.ndef [--write usb]

The issuer key file is JSON (mode 0600): ``kind``, ``key_id``,
``private_key`` and ``public_key`` (base64 of the raw 32 bytes). The public
key and key id go into every station's ``central.issuer_keys``.

``--out`` writes the NDEF message (raw bytes, see ``station.credentials``
for the record format) for ``borne tap --credential FILE`` or another
writer; ``--write DEVICE`` writes it with nfcpy to the NTAG21x on that
reader (``usb``, ``tty:AMA0:pn532``...), after checking the tag's UID is the
one signed, and reads it back.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from station.credentials import MAX_KEY_ID_LEN, MAX_MEMBER_ID_LEN, MAX_SERIAL, encode_signed_card

KEY_KIND = "borne-issuer-key"

__all__ = ["IssuerKey", "InputError", "encode_signed_card", "issue_card", "load_issuer_key", "main", "new_issuer_key"]


class InputError(ValueError):
    """Bad input; the message is one line naming the culprit."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuerKey:
    key_id: str
    private_key: Ed25519PrivateKey

    @property
    def public_key_b64(self) -> str:
        raw = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()


def _private_raw(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def new_issuer_key(key_id: str, out: Path, *, force: bool = False) -> IssuerKey:
    if not key_id or len(key_id.encode()) > MAX_KEY_ID_LEN:
        raise InputError(f"--key-id must be 1..{MAX_KEY_ID_LEN} bytes")
    if out.exists() and not force:
        raise InputError(f"--out {out}: file exists (use --force to replace it)")
    key = IssuerKey(key_id=key_id, private_key=Ed25519PrivateKey.generate())
    doc = {
        "kind": KEY_KIND,
        "key_id": key_id,
        "private_key": base64.b64encode(_private_raw(key.private_key)).decode(),
        "public_key": key.public_key_b64,
    }
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
    except OSError as err:
        raise InputError(f"--out {out}: {err.strerror or err}") from None
    return key


def load_issuer_key(path: Path) -> IssuerKey:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(f"--key {path}: {err.strerror or err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"--key {path}: not a JSON issuer key file") from None
    if not isinstance(doc, dict) or doc.get("kind") != KEY_KIND:
        raise InputError(f"--key {path}: not a {KEY_KIND} file")
    key_id = doc.get("key_id")
    if not isinstance(key_id, str) or not key_id or len(key_id.encode()) > MAX_KEY_ID_LEN:
        raise InputError(f"--key {path}: bad key_id")
    try:
        raw = base64.b64decode(str(doc.get("private_key", "")), validate=True)
        private_key = Ed25519PrivateKey.from_private_bytes(raw)
    except (binascii.Error, ValueError):
        raise InputError(f"--key {path}: private_key is not a base64 Ed25519 key") from None
    return IssuerKey(key_id=key_id, private_key=private_key)


def parse_uid(text: str) -> bytes:
    try:
        uid = bytes.fromhex(text.replace(":", ""))
    except ValueError:
        raise InputError(f"--uid {text!r}: not hexadecimal") from None
    if len(uid) not in (4, 7, 10):
        raise InputError(f"--uid {text!r}: must be 4, 7 or 10 bytes (NTAG21x: 7)")
    return uid


def issue_card(key: IssuerKey, member_id: str, serial: int, uid: bytes) -> bytes:
    if not member_id or len(member_id.encode()) > MAX_MEMBER_ID_LEN:
        raise InputError(f"--member must be 1..{MAX_MEMBER_ID_LEN} bytes")
    if not 0 <= serial <= MAX_SERIAL:
        raise InputError(f"--serial must be 0..{MAX_SERIAL}")
    return encode_signed_card(key.private_key, key.key_id, member_id, serial, uid)


def write_card(device: str, uid: bytes, message: bytes, *, timeout_s: float = 15.0) -> None:
    """Write ``message`` to the tag with that ``uid`` on the nfcpy reader
    ``device``, then read it back. Raises InputError (wrong card, too small,
    locked) or OSError (no reader, no card in time, write failed)."""
    import nfc
    import nfc.clf
    import nfc.tag

    deadline = time.monotonic() + timeout_s
    try:
        clf = nfc.ContactlessFrontend(device)
    except (OSError, ValueError) as err:
        raise OSError(f"cannot open reader {device}: {err}") from None
    with clf:
        tag: Any = clf.connect(
            rdwr={"targets": ["106A"], "interval": 0.1, "on-connect": lambda tag: False, "beep-on-connect": False},
            terminate=lambda: time.monotonic() > deadline,
        )
        if not tag:
            raise OSError(f"no card on {device} within {timeout_s:g} s")
        if bytes(tag.identifier) != uid:
            raise InputError(f"the card on the reader has UID {tag.identifier.hex().upper()}, not --uid {uid.hex().upper()}")
        try:
            if tag.ndef is None:
                tag.format()
            if tag.ndef is None:
                raise InputError("the card cannot hold NDEF (not a Type 2 NTAG21x?)")
            if not tag.ndef.is_writeable:
                raise InputError("the card is write-protected")
            if len(message) > tag.ndef.capacity:
                raise InputError(f"the credential needs {len(message)} bytes, the card holds {tag.ndef.capacity}")
            tag.ndef.octets = message
            if tag.ndef.has_changed or tag.ndef is None or bytes(tag.ndef.octets) != message:
                raise OSError("read-back after write differs")
        except (nfc.tag.TagCommandError, nfc.clf.CommunicationError) as err:
            raise OSError(f"write failed: {err}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="borne", description="Issuing keys and signed member cards.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    new = sub.add_parser("new-issuer-key", help="generate a town-hall issuing key")
    new.add_argument("--out", required=True, type=Path, help="key file to create (JSON, mode 0600)")
    new.add_argument("--key-id", default="townhall-1", help="key id named in cards and in central.issuer_keys")
    new.add_argument("--force", action="store_true", help="replace an existing file")
    issue = sub.add_parser("issue-card", help="sign a member card")
    issue.add_argument("--member", required=True, help="member id")
    issue.add_argument("--serial", required=True, type=int, help="card serial (the roster's current serial)")
    issue.add_argument("--uid", required=True, help="the card's UID in hex (NTAG21x: 7 bytes)")
    issue.add_argument("--key", required=True, type=Path, help="issuer key file")
    issue.add_argument("--out", type=Path, help="write the NDEF message to this file")
    issue.add_argument("--write", metavar="DEVICE", help="write it to the card on this nfcpy reader")
    issue.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the card (--write)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "new-issuer-key":
            key = new_issuer_key(args.key_id, args.out, force=args.force)
            print(f"issuer key {key.key_id} written to {args.out}")
            print("central.issuer_keys entry:")
            print(f"  - key_id: {key.key_id}\n    public_key: {key.public_key_b64}")
            return 0
        if not args.out and not args.write:
            raise InputError("issue-card needs --out FILE or --write DEVICE")
        key = load_issuer_key(args.key)
        uid = parse_uid(args.uid)
        message = issue_card(key, args.member, args.serial, uid)
        if args.out:
            try:
                args.out.write_bytes(message)
            except OSError as err:
                raise InputError(f"--out {args.out}: {err.strerror or err}") from None
            print(f"card record for {args.member} serial {args.serial} ({len(message)} bytes) written to {args.out}")
        if args.write:
            write_card(args.write, uid, message, timeout_s=args.timeout)
            print(f"card record for {args.member} serial {args.serial} written to the card on {args.write}")
        return 0
    except InputError as err:
        print(f"{parser.prog}: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{parser.prog}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
