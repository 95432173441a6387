"""Operator tools that talk to a station's sync API.

    push-roster FILE --url URL --token T
    push-reservations FILE --url URL --token T
    pull-journal --url URL --token T --out FILE.jsonl [--ack] [--limit N]
    status --url URL --token T [--json]

FILE is one signed document (a JSON object), a JSON array of signed parts, or
a ``.jsonl`` file with one signed part per line (read line by line, for
rosters too large to hold). ``--url`` and ``--token`` default to the
``BORNE_URL`` and ``BORNE_TOKEN`` environment variables (a token on a command
line is visible to every user of the machine).

Exit 0 on success, 2 on bad input (one line naming the culprit), 1 when the
station refuses or cannot be reached (its error code and detail).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import aiohttp

EXIT_OK, EXIT_STATION, EXIT_INPUT = 0, 1, 2
_ENVELOPE_KEYS = ("key_id", "payload", "signature")


class BadInput(Exception):
    """Exit 2: the operator gave something unusable."""


class StationFailed(Exception):
    """Exit 1: the station refused, failed or could not be reached."""


# -- reading signed documents ---------------------------------------------------------


def _check_envelope(doc: Any, where: str, expected: str) -> None:
    if not isinstance(doc, dict) or any(not isinstance(doc.get(k), str) for k in _ENVELOPE_KEYS):
        raise BadInput(f"{where}: not a signed document (needs string key_id, payload, signature)")
    try:
        payload = json.loads(base64.b64decode(doc["payload"], validate=True))
    except (binascii.Error, ValueError):
        raise BadInput(f"{where}: payload is not base64 of JSON") from None
    kind = payload.get("type") if isinstance(payload, dict) else None
    if kind != expected:
        raise BadInput(f"{where}: a {kind or 'untyped'} document, expected {expected}")


def iter_documents(path: Path, expected: str) -> Iterator[tuple[str, bytes]]:
    """(where, body) for each signed document or part in ``path``, checked locally."""
    try:
        if path.suffix == ".jsonl":
            with path.open("rb") as lines:
                for number, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    where = f"{path}:{number}"
                    try:
                        doc = json.loads(line)
                    except ValueError as err:
                        raise BadInput(f"{where}: not JSON ({err})") from None
                    _check_envelope(doc, where, expected)
                    yield where, line.strip()
            return
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as err:
        raise BadInput(f"{path}: {err.strerror or err}") from None
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise BadInput(f"{path}: not JSON ({err})") from None
    docs = data if isinstance(data, list) else [data]
    if not docs:
        raise BadInput(f"{path}: an empty list of parts")
    checked = []
    for index, doc in enumerate(docs, 1):
        where = f"{path} part {index}" if isinstance(data, list) else str(path)
        _check_envelope(doc, where, expected)
        checked.append((where, json.dumps(doc).encode()))
    yield from checked


# -- talking to the station --------------------------------------------------------------


class Station:
    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self._session = session
        self._url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}

    async def request(self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        headers = {**self._headers, **(headers or {})}
        try:
            async with self._session.request(method, self._url + path, headers=headers, **kwargs) as resp:
                text = await resp.text()
                try:
                    body = json.loads(text) if text else None
                except ValueError:
                    body = None
                if resp.status >= 400:
                    if isinstance(body, dict) and "error" in body:
                        raise StationFailed(f"{resp.status} {body['error']}: {body.get('detail', '')}")
                    raise StationFailed(f"{resp.status} {resp.reason}: {text[:200]}")
                if body is None:
                    raise StationFailed(f"{method} {path}: the station did not answer JSON")
                return body
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
            raise StationFailed(f"cannot reach {self._url}: {err or type(err).__name__}") from None


def _session(timeout_s: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))


async def push(path: Path, expected: str, url: str, token: str, timeout_s: float, out: TextIO) -> None:
    """Send each document or part in order; stop at the first refusal.

    A JSON file is checked whole before anything is sent; a .jsonl file is
    streamed, so a bad line stops the push after the parts before it (the
    station discards a staging that never completes).
    """
    documents = iter_documents(path, expected)
    first = next(documents, None)
    if first is None:
        raise BadInput(f"{path}: no document in it")
    async with _session(timeout_s) as session:
        station = Station(session, url, token)
        for where, body in _chain(first, documents):
            try:
                answer = await station.request("PUT", f"/v1/{expected}", data=body, headers={"Content-Type": "application/json"})
            except StationFailed as err:
                raise StationFailed(f"{where}: {err}") from None
            part = f" part {answer.get('part')}/{answer.get('parts')}" if answer.get("part") else ""
            state = "applied" if answer.get("applied") else "staged"
            print(f"{expected} version {answer.get('version')}{part}: {state} ({answer.get('size')} entries)", file=out)


def _chain(first: tuple[str, bytes], rest: Iterator[tuple[str, bytes]]) -> Iterator[tuple[str, bytes]]:
    yield first
    yield from rest


def last_seq_in(path: Path, err: TextIO) -> tuple[int, str | None]:
    """The last seq (and station) already in a journal file; drops a torn last line."""
    if not path.exists():
        return 0, None
    try:
        with path.open("rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return 0, None
            tail, pos = b"", size
            while pos > 0 and tail.count(b"\n") < 2:
                step = min(65536, pos)
                pos -= step
                f.seek(pos)
                tail = f.read(step) + tail
            if not tail.endswith(b"\n"):
                keep = tail.rfind(b"\n") + 1  # 0 when the file is one torn line
                f.truncate(pos + keep)
                print(f"{path}: dropped an incomplete last line (it will be fetched again)", file=err)
                tail = tail[:keep]
            lines = [line for line in tail.split(b"\n") if line.strip()]
    except OSError as e:
        raise BadInput(f"{path}: {e.strerror or e}") from None
    if not lines:
        return 0, None
    try:
        last = json.loads(lines[-1])
        return int(last["seq"]), last.get("station")
    except (ValueError, KeyError, TypeError):
        raise BadInput(f"{path}: the last line is not a journal event") from None


async def pull_journal(url: str, token: str, out_path: Path, ack: bool, limit: int, timeout_s: float, out: TextIO, err: TextIO) -> None:
    after, station_id = last_seq_in(out_path, err)
    written = 0
    async with _session(timeout_s) as session:
        station = Station(session, url, token)
        with out_path.open("ab") as sink:
            while True:
                page = await station.request("GET", "/v1/journal", params={"after": str(after), "limit": str(limit)})
                events = page.get("events") or []
                for event in events:
                    seq = event.get("seq")
                    if not isinstance(seq, int) or seq <= after:
                        raise StationFailed(f"the station sent seq {seq!r} after {after}")
                    if station_id is not None and event.get("station") != station_id:
                        raise BadInput(f"{out_path} holds events of station {station_id}, not {event.get('station')}")
                    station_id = event.get("station")
                    after = seq
                if events:
                    sink.write(b"".join(json.dumps(e, ensure_ascii=False).encode() + b"\n" for e in events))
                    sink.flush()
                    os.fsync(sink.fileno())
                    written += len(events)
                if not events or after >= page.get("last_seq", after):
                    break
        print(f"{written} new events written to {out_path} (last seq {after})", file=out)
        if ack and after > 0:
            answer = await station.request("POST", "/v1/journal/ack", json={"up_to": after})
            print(f"acknowledged up to {answer.get('acknowledged')}", file=out)


def format_status(s: dict[str, Any]) -> str:
    roster = s.get("roster")
    roster_line = (
        f"version {roster['version']}, {roster['size']} members, expires {roster.get('expires_at') or 'never'}"
        if roster
        else "none"
    )
    journal = s.get("journal", {})
    lines = [
        f"station     {s.get('station')} ({s.get('name')})",
        f"software    {s.get('software_version')}",
        f"mode        {s.get('mode')}, state {s.get('state')}",
        f"clock       {'trusted' if s.get('clock_trusted') else 'NOT trusted'}",
        f"roster      {roster_line}",
        f"reservations version {s.get('reservations', {}).get('version')}",
        f"journal     last seq {journal.get('last_seq')}, acknowledged {journal.get('acked_seq')}, backlog {journal.get('backlog')}",
    ]
    for bay in s.get("bays", []):
        power = "?" if bay.get("power_w") is None else f"{bay['power_w']:.0f} W"
        energy = "?" if bay.get("energy_kwh") is None else f"{bay['energy_kwh']:.2f} kWh"
        relay = {True: "on", False: "off", None: "?"}[bay.get("relay_on")]
        reach = "" if bay.get("plug_reachable") else ", plug unreachable"
        lines.append(
            f"bay {bay.get('bay'):<7} {bay.get('vehicle') or '(out: ' + str(bay.get('home_vehicle')) + ')'}: "
            f"{bay.get('state')}, relay {relay}, {power}, {energy}{reach}"
        )
    for alert in s.get("alerts", []):
        lines.append(f"alert       [{alert.get('severity')}] {alert.get('title')}: {alert.get('message')}")
    return "\n".join(lines)


async def show_status(url: str, token: str, raw: bool, timeout_s: float, out: TextIO) -> None:
    async with _session(timeout_s) as session:
        status = await Station(session, url, token).request("GET", "/v1/status")
    print(json.dumps(status, indent=2, ensure_ascii=False) if raw else format_status(status), file=out)


# -- command line --------------------------------------------------------------------------


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("BORNE_URL"), help="station API base URL, e.g. http://10.0.0.5:8080 (or $BORNE_URL)")
    parser.add_argument("--token", default=os.environ.get("BORNE_TOKEN"), help="bearer token (or $BORNE_TOKEN)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the operator subcommands to a ``borne`` parser; each sets ``func``."""
    for name, doc_type in (("push-roster", "roster"), ("push-reservations", "reservations")):
        p = subparsers.add_parser(name, help=f"send a signed {doc_type} document (or its parts) to a station")
        p.add_argument("file", type=Path, help="signed document JSON, a JSON list of parts, or .jsonl with one part per line ('-': stdin)")
        _connection(p)
        p.set_defaults(func=_run_push, doc_type=doc_type)
    p = subparsers.add_parser("pull-journal", help="append a station's new journal events to a JSON Lines file")
    _connection(p)
    p.add_argument("--out", type=Path, required=True, help="JSON Lines file; new events are appended after its last seq")
    p.add_argument("--ack", action="store_true", help="acknowledge what the file now holds")
    p.add_argument("--limit", type=int, default=500, help="events per page (1-1000)")
    p.set_defaults(func=_run_pull)
    p = subparsers.add_parser("status", help="show a station's status")
    _connection(p)
    p.add_argument("--json", action="store_true", help="print the raw JSON")
    p.set_defaults(func=_run_status)


def _need_connection(args: argparse.Namespace) -> tuple[str, str]:
    if not args.url:
        raise BadInput("--url is required (or set BORNE_URL)")
    if not args.url.startswith(("http://", "https://")):
        raise BadInput(f"--url {args.url!r}: expected http://HOST:PORT or https://...")
    if not args.token:
        raise BadInput("--token is required (or set BORNE_TOKEN)")
    return args.url, args.token


def _run_push(args: argparse.Namespace) -> None:
    url, token = _need_connection(args)
    asyncio.run(push(args.file, args.doc_type, url, token, args.timeout, sys.stdout))


def _run_pull(args: argparse.Namespace) -> None:
    url, token = _need_connection(args)
    if not 1 <= args.limit <= 1000:
        raise BadInput(f"--limit {args.limit}: expected 1 to 1000")
    asyncio.run(pull_journal(url, token, args.out, args.ack, args.limit, args.timeout, sys.stdout, sys.stderr))


def _run_status(args: argparse.Namespace) -> None:
    url, token = _need_connection(args)
    asyncio.run(show_status(url, token, args.json, args.timeout, sys.stdout))


def _name(args: argparse.Namespace) -> str:
    return getattr(args, "command", None) or "operator"


def run(args: argparse.Namespace) -> int:
    """Run a parsed operator subcommand; the exit code."""
    try:
        args.func(args)
    except BadInput as err:
        print(f"borne {_name(args)}: {err}", file=sys.stderr)
        return EXIT_INPUT
    except StationFailed as err:
        print(f"borne {_name(args)}: station error: {err}", file=sys.stderr)
        return EXIT_STATION
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="borne", description="Operator tools for a borne station's sync API.")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
