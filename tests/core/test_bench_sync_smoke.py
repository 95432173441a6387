"""The sync benchmark at a toy size, so that its code cannot rot unnoticed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench import bench_sync


@pytest.mark.timeout(60)
def test_bench_sync_runs_at_a_small_size(tmp_path: Path) -> None:
    rosters, journal = asyncio.run(bench_sync.run([2000], journal_events=2000, part_members=700, rest_s=0.3,
                                                  work=tmp_path / "work", cache=tmp_path / "cache"))
    (roster,) = rosters
    assert roster.parts == 3 and roster.size_after == 2000
    assert roster.apply_s > 0 and roster.bare_s > 0 and roster.main_peak_mb > 0
    assert roster.rest.n > 0 and set(roster.rest.reasons) <= {"walk_up", "trip_ended"}
    assert journal is not None and journal.events == 2000 and journal.pages == 2
    lines: list[str] = []
    bench_sync.report(rosters, journal, out=lines.append)
    assert any("budgets" in line for line in lines)
