"""``python -m bench``: every benchmark, one after the other (``make bench``)."""

from __future__ import annotations

import importlib
import sys

SUITES = ("bench.bench_tap", "bench.bench_nfc", "bench.bench_modbus", "bench.bench_sync")


def main() -> int:
    only = sys.argv[1:]
    for name in SUITES:
        if only and name.rsplit(".", 1)[-1].removeprefix("bench_") not in only:
            continue
        print(f"\n=== {name} ===", flush=True)
        module = importlib.import_module(name)
        rc = module.main([])
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
