"""Central keys and signed documents, for communes without a central server.

    borne new-central-key --out central.key            # prints the public key for the config
    borne build-roster register.csv --card-key K --out roster.json [--version N]
    borne sign-document roster.json --key central.key --key-id central-2026 --out roster.signed.json [--parts N]

The register is the town hall's CSV with columns ``member_id, birth_date,
licence, highway_code, deposit_eur, bank_card, status, valid_from,
valid_until, card_uid, card_kind, card_serial`` (one row per card; a member
with two cards has two rows). Ineligible applicants are left out and listed.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat, load_pem_private_key

from provisioning.eligibility import Applicant, ineligibility
from station.credentials import card_ref
from station.documents import sign


class UsageError(Exception):
    pass


def _rfc(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def load_key(path: str) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: not a readable PEM private key: {err}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path}: not an Ed25519 key")
    return key


def new_key(out: str) -> str:
    key = Ed25519PrivateKey.generate()
    path = Path(out)
    if path.exists():
        raise UsageError(f"{out}: exists; refusing to overwrite a key")
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    path.chmod(0o600)
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def _bool(value: str, where: str) -> bool:
    v = value.strip().lower()
    if v in ("yes", "y", "true", "1", "oui"):
        return True
    if v in ("no", "n", "false", "0", "non", ""):
        return False
    raise UsageError(f"{where}: expected yes or no, got {value!r}")


def build_roster(rows: Sequence[dict[str, str]], *, card_key: bytes, version: int, scope: list[str], today: date,
                 valid_days: int = 14) -> tuple[dict[str, Any], list[str]]:
    members: dict[str, dict[str, Any]] = {}
    refused: list[str] = []
    required = ("member_id", "birth_date", "licence", "deposit_eur", "bank_card", "card_uid")
    for n, row in enumerate(rows, start=2):
        where = f"line {n}"
        for column in required:
            if not (row.get(column) or "").strip():
                raise UsageError(f"{where}: column {column} is empty")
        try:
            applicant = Applicant(
                member_id=row["member_id"].strip(), birth_date=date.fromisoformat(row["birth_date"].strip()),
                licence=row["licence"], highway_code=_bool(row.get("highway_code", ""), f"{where} highway_code"),
                deposit_eur=int(row["deposit_eur"]), bank_card=_bool(row["bank_card"], f"{where} bank_card"),
            )
            uid = bytes.fromhex(row["card_uid"].replace(":", "").strip())
        except ValueError as err:
            raise UsageError(f"{where}: {err}") from None
        why = ineligibility(applicant, today)
        if why is not None:
            refused.append(f"{applicant.member_id}: {why}")
            continue
        entry = members.setdefault(applicant.member_id, {
            "member_id": applicant.member_id, "status": (row.get("status") or "active").strip(),
            "valid_from": row.get("valid_from") or _rfc(datetime.combine(today, datetime.min.time(), UTC)),
            "valid_until": row.get("valid_until") or _rfc(datetime.combine(today, datetime.min.time(), UTC) + timedelta(days=365)),
            "cards": [],
        })
        entry["cards"].append({"ref": card_ref(card_key, uid), "kind": (row.get("card_kind") or "uid").strip(),
                               "serial": int(row.get("card_serial") or 1)})
    now = datetime.now(UTC)
    doc = {"type": "roster", "kind": "full", "version": version, "station_scope": scope, "issued_at": _rfc(now),
           "expires_at": _rfc(now + timedelta(days=valid_days)), "members": list(members.values())}
    return doc, refused


def sign_parts(doc: dict[str, Any], key: Ed25519PrivateKey, key_id: str, parts: int) -> list[bytes]:
    if parts <= 1:
        return [sign(doc, key, key_id)]
    items = doc.get("members") if doc.get("type") == "roster" else doc.get("reservations")
    if not isinstance(items, list):
        raise UsageError("only a full document with a list of entries can be split")
    field = "members" if doc.get("type") == "roster" else "reservations"
    size = -(-len(items) // parts)
    return [sign({**doc, field: items[i * size:(i + 1) * size], "part": i + 1, "parts": parts}, key, key_id)
            for i in range(parts)]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="borne", description="Keys and signed documents.")
    sub = p.add_subparsers(dest="command", required=True)
    k = sub.add_parser("new-central-key", help="generate an Ed25519 document-signing key")
    k.add_argument("--out", required=True)
    s = sub.add_parser("sign-document", help="sign a roster or reservations payload")
    s.add_argument("payload", help="JSON payload file")
    s.add_argument("--key", required=True)
    s.add_argument("--key-id", required=True)
    s.add_argument("--out", required=True, help="output file (a JSON list when --parts > 1)")
    s.add_argument("--parts", type=int, default=1)
    b = sub.add_parser("build-roster", help="build a roster payload from the town hall's register (CSV)")
    b.add_argument("register")
    b.add_argument("--card-key", required=True, help="the deployment card key (or @FILE)")
    b.add_argument("--version", type=int, required=True)
    b.add_argument("--scope", default="*", help="comma-separated station ids, default *")
    b.add_argument("--valid-days", type=int, default=14)
    b.add_argument("--out", required=True)
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    try:
        if args.command == "new-central-key":
            print(f"public_key: {new_key(args.out)}")
        elif args.command == "sign-document":
            try:
                doc = json.loads(Path(args.payload).read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise UsageError(f"{args.payload}: {err}") from None
            bodies = sign_parts(doc, load_key(args.key), args.key_id, args.parts)
            out = bodies[0].decode() if len(bodies) == 1 else "[" + ",".join(b.decode() for b in bodies) + "]"
            Path(args.out).write_text(out)
            print(f"{args.out}: {len(bodies)} signed document(s)")
        else:
            card_key = args.card_key
            if card_key.startswith("@"):
                card_key = Path(card_key[1:]).read_text().strip()
            try:
                with open(args.register, newline="", encoding="utf-8") as fh:
                    rows = list(csv.DictReader(fh))
            except OSError as err:
                raise UsageError(f"{args.register}: {err.strerror}") from None
            doc, refused = build_roster(rows, card_key=card_key.encode(), version=args.version,
                                        scope=[s.strip() for s in args.scope.split(",")], today=date.today(),
                                        valid_days=args.valid_days)
            Path(args.out).write_text(json.dumps(doc, ensure_ascii=False, indent=1))
            print(f"{args.out}: {len(doc['members'])} member(s)")
            for line in refused:
                print(f"  not eligible: {line}")
    except UsageError as err:
        print(f"borne: {err}", file=sys.stderr)
        return 2
    return 0
