"""``borne``: the station's command line.

Exit codes: 0 success, 1 failure at run time (a station error), 2 bad input
(with a one-line reason naming the culprit). No traceback for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import secrets
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from station import __version__
from station.errors import BorneError, ConfigError, StorageError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="borne", description="Edge controller of a car-sharing charging station.")
    p.add_argument("--version", action="version", version=f"borne {__version__}")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run the station in the foreground (SIGTERM stops it cleanly)")
    run.add_argument("-c", "--config", required=True, help="station YAML file")

    demo = sub.add_parser("demo", help="run a demo station on simulated hardware, nothing to configure")
    demo.add_argument("--port", type=int, default=8080, help="sync API port on 127.0.0.1 (default 8080)")
    demo.add_argument("--token", help="bearer token for the API (default: a new one, printed)")
    demo.add_argument("--mqtt", metavar="mqtt://HOST:PORT", help="publish to this MQTT broker (Home Assistant)")
    demo.add_argument("--data", default="data/demo", help="data folder (default data/demo)")
    demo.add_argument("--reader-port", type=int, default=54321, help="UDP port of the emulated NFC reader")
    demo.add_argument("--plug-port", type=int, default=5020, help="first Modbus TCP port of the plug simulators")
    demo.add_argument("--speed", type=float, default=60.0, help="how much faster the simulated cars charge")
    demo.add_argument("--scenario", action="store_true", help="play a scripted day and exit 0 if all went as expected")
    demo.add_argument("--fresh", action="store_true", help="start from an empty data folder")

    tap = sub.add_parser("tap", help="present a card to a running demo's emulated reader")
    tap.add_argument("uid", help="card UID in hex, e.g. 0A0B0C0D")
    tap.add_argument("--credential", help="signed card file (from 'borne issue-card')")
    tap.add_argument("--reader", default="udp:127.0.0.1:54321", help="emulated reader address")
    tap.add_argument("--hold", type=float, default=0.5, help="seconds the card stays on the reader")

    check = sub.add_parser("check-config", help="validate a station YAML file")
    check.add_argument("-c", "--config", required=True)

    status = sub.add_parser("status", help="show a station's status through its API")
    status.add_argument("--url", default="http://127.0.0.1:8080")
    status.add_argument("--token", required=False, help="bearer token (or BORNE_TOKEN)")

    hash_token = sub.add_parser("hash-token", help="print the sha256 of a token, for api.tokens in the config")
    hash_token.add_argument("token", nargs="?", help="the token (default: a new random one)")

    for name, helptext in (
        ("push-roster", "push a signed roster document (or parts) to a station"),
        ("push-reservations", "push a signed reservations document to a station"),
        ("pull-journal", "pull a station's journal into JSON Lines and acknowledge it"),
        ("sign-document", "sign a roster or reservations JSON payload with a central key"),
        ("new-central-key", "generate an Ed25519 key that signs documents"),
        ("build-roster", "build a roster document from the town hall's register (CSV)"),
    ):
        sub.add_parser(name, help=helptext, add_help=False)
    for name, helptext in (("issue-card", "write a signed member card (NFC or file)"),
                           ("new-issuer-key", "generate the town hall's card-issuing key")):
        sub.add_parser(name, help=helptext, add_help=False)
    return p


_OPERATOR = {"push-roster", "push-reservations", "pull-journal"}
_DOCS = {"sign-document", "new-central-key", "build-roster"}
_CARDS = {"issue-card", "new-issuer-key"}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Provisioning and operator tools own their arguments.
    first = next((a for a in argv if not a.startswith("-")), None)
    if first in _OPERATOR | _DOCS | _CARDS:
        rest = argv[argv.index(first) + 1:]
        if first in _OPERATOR:
            from provisioning.operator import main as operator_main

            return operator_main([first, *rest])
        if first in _DOCS:
            from provisioning.documents import main as documents_main

            return documents_main([first, *rest])
        from provisioning.cards import main as cards_main

        return cards_main([first, *rest])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    # pymodbus logs every timeout at ERROR; our adapter already says it once at WARNING.
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if args.log_level == "DEBUG" else logging.CRITICAL)
    try:
        return _dispatch(args)
    except (ConfigError, StorageError) as err:
        print(f"borne: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BorneError as err:
        print(f"borne: {err}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "check-config":
        from station.config import load_config

        from station.bootstrap import check_devices

        config = load_config(args.config)
        notes = check_devices(config)
        print(f"{args.config}: ok (station {config.station.id}, {len(config.bays)} bay(s))")
        for note in notes:
            print(f"  {note}")
        return EXIT_OK
    if args.command == "hash-token":
        token = args.token or secrets.token_urlsafe(24)
        if not args.token:
            print(f"token:  {token}")
        print(f"sha256: {hashlib.sha256(token.encode()).hexdigest()}")
        return EXIT_OK
    if args.command == "run":
        from station.config import load_config

        config = load_config(args.config)
        return _run_until_signal(_run(config))
    if args.command == "demo":
        from station.bootstrap import run_demo, run_scenario

        if args.scenario:
            return EXIT_OK if asyncio.run(run_scenario(Path(args.data))) else EXIT_FAIL
        return _run_until_signal(run_demo(args))
    if args.command == "tap":
        from station.bootstrap import tap_card

        return tap_card(args.reader, args.uid, args.credential, hold_s=args.hold)
    if args.command == "status":
        from provisioning.operator import main as operator_main

        extra = ["--token", args.token] if args.token else []
        return operator_main(["status", "--url", args.url, *extra])
    raise AssertionError(args.command)


async def _run(config: object) -> None:
    from station.bootstrap import build_station, run_station

    station = build_station(config)  # type: ignore[arg-type]
    await run_station(station, config)  # type: ignore[arg-type]


def _run_until_signal(coro: object) -> int:
    async def main() -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(main())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
