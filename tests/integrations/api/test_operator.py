"""provisioning.operator against a real API server on loopback.

The CLI runs its own event loop (asyncio.run), so it is called in a thread
while the server keeps serving on the test's loop.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from provisioning import operator
from tests.integrations.api.conftest import TOKEN
from tests.integrations.api.fake import reservations_payload, roster_payload, sign


@pytest.fixture
async def cli(client, monkeypatch):
    url = str(client.make_url("/")).rstrip("/")
    monkeypatch.delenv("BORNE_URL", raising=False)
    monkeypatch.delenv("BORNE_TOKEN", raising=False)

    async def run(*argv: str, connect: bool = True) -> int:
        extra = ["--url", url, "--token", TOKEN] if connect else []
        return await asyncio.to_thread(operator.main, [*argv, *extra])

    return run


async def test_push_roster(cli, target, key, tmp_path, capsys):
    doc = tmp_path / "roster.json"
    doc.write_text(json.dumps(sign(roster_payload(3, members=4), key)))
    assert await cli("push-roster", str(doc)) == 0
    assert target.versions["roster"] == 3
    assert "roster version 3: applied (4 entries)" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
async def test_push_reservations_in_parts(cli, target, key, tmp_path, capsys, suffix):
    parts = [sign(reservations_payload(4, part=i, parts=3), key) for i in (1, 2, 3)]
    doc = tmp_path / f"reservations{suffix}"
    doc.write_text(json.dumps(parts) if suffix == ".json" else "\n".join(json.dumps(p) for p in parts) + "\n")
    assert await cli("push-reservations", str(doc)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "reservations version 4 part 1/3: staged (1 entries)",
        "reservations version 4 part 2/3: staged (1 entries)",
        "reservations version 4 part 3/3: applied (1 entries)",
    ]
    assert target.versions["reservations"] == 4


async def test_station_refusal_exits_1_with_code_and_detail(cli, target, key, tmp_path, capsys):
    await cli("push-roster", _file(tmp_path, sign(roster_payload(5), key)))
    delta = _file(tmp_path, sign(roster_payload(7, kind="delta", base_version=6), key))
    assert await cli("push-roster", delta) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("borne push-roster: station error:")
    assert "409 base_mismatch: delta on version 6, station has 5" in err


@pytest.mark.parametrize(
    "content, reason",
    [
        ("{", "not JSON"),
        ('{"key_id": "k"}', "not a signed document"),
        ('{"key_id": "k", "payload": "%%%", "signature": "AA=="}', "payload is not base64 of JSON"),
        ("[]", "an empty list of parts"),
    ],
)
async def test_bad_file_exits_2_with_one_line(cli, target, tmp_path, capsys, content, reason):
    doc = tmp_path / "bad.json"
    doc.write_text(content)
    assert await cli("push-roster", str(doc)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and reason in err and str(doc) in err


async def test_wrong_document_type_is_caught_before_sending(cli, target, key, tmp_path, capsys):
    assert await cli("push-roster", _file(tmp_path, sign(reservations_payload(1), key))) == 2
    assert "a reservations document, expected roster" in capsys.readouterr().err
    assert target.versions == {"roster": 0, "reservations": 0}


async def test_missing_file_and_missing_connection_exit_2(cli, tmp_path, capsys):
    assert await cli("push-roster", str(tmp_path / "nope.json")) == 2
    assert "No such file" in capsys.readouterr().err
    assert await cli("status", connect=False) == 2
    assert "--url is required" in capsys.readouterr().err
    assert await cli("status", "--url", "ftp://x", "--token", "t", connect=False) == 2
    assert await cli("bogus-command", connect=False) == 2


async def test_wrong_token_exits_1(cli, client, capsys):
    url = str(client.make_url("/")).rstrip("/")
    assert await asyncio.to_thread(operator.main, ["status", "--url", url, "--token", "nope"]) == 1
    assert "401 unauthorized" in capsys.readouterr().err


async def test_unreachable_station_exits_1(capsys, unused_tcp_port):
    code = await asyncio.to_thread(operator.main, ["status", "--url", f"http://127.0.0.1:{unused_tcp_port}", "--token", "t"])
    assert code == 1
    assert "cannot reach" in capsys.readouterr().err


async def test_pull_journal_pages_appends_resumes_and_acks(cli, target, tmp_path, capsys):
    out = tmp_path / "hede.jsonl"
    assert await cli("pull-journal", "--out", str(out), "--limit", "7") == 0
    assert [json.loads(line)["seq"] for line in out.read_text().splitlines()] == list(range(1, 26))
    assert target.acked == 0
    for _ in range(3):
        target.append("charge.completed", data={"wh": 4200})
    assert await cli("pull-journal", "--out", str(out), "--ack", "--limit", "7") == 0
    seqs = [json.loads(line)["seq"] for line in out.read_text().splitlines()]
    assert seqs == list(range(1, 29))
    assert target.acked == 28
    text = capsys.readouterr().out
    assert "3 new events written" in text and "acknowledged up to 28" in text


async def test_pull_journal_drops_a_torn_last_line(cli, target, tmp_path, capsys):
    out = tmp_path / "hede.jsonl"
    first = json.dumps(target.events[0])
    out.write_text(first + "\n" + json.dumps(target.events[1])[:20])
    assert await cli("pull-journal", "--out", str(out)) == 0
    assert [json.loads(line)["seq"] for line in out.read_text().splitlines()] == list(range(1, 26))
    assert "dropped an incomplete last line" in capsys.readouterr().err


async def test_pull_journal_refuses_another_stations_file(cli, target, tmp_path, capsys):
    out = tmp_path / "other.jsonl"
    out.write_text(json.dumps({**target.events[0], "station": "bazouges"}) + "\n")
    assert await cli("pull-journal", "--out", str(out)) == 2
    assert "holds events of station bazouges" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 1


async def test_status_pretty_and_json(cli, capsys):
    assert await cli("status") == 0
    text = capsys.readouterr().out
    assert "station     hede" in text
    assert "journal     last seq 25, acknowledged 0, backlog 25" in text
    assert "bay 1       ami-1: charging, relay on, 1730 W, 412.25 kWh" in text
    assert "(out: ami-2): released, relay ?, ?, ?, plug unreachable" in text
    assert await cli("status", "--json") == 0
    assert json.loads(capsys.readouterr().out)["station"] == "hede"


def _file(tmp_path, envelope) -> str:
    path = tmp_path / f"doc-{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(envelope))
    return str(path)
