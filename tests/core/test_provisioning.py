"""Town-hall tools: eligibility rules, roster from the register, signing in parts."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from provisioning.documents import main as documents_main
from provisioning.eligibility import Applicant, ineligibility
from station.documents import verify

TODAY = date(2026, 11, 22)


def applicant(**kw: object) -> Applicant:
    base = dict(member_id="m", birth_date=date(2010, 1, 1), licence="AM", highway_code=False, deposit_eur=300, bank_card=True)
    return Applicant(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({}, None),
        ({"birth_date": date(2012, 11, 23)}, "under 14"),  # 14 tomorrow
        ({"birth_date": date(2012, 11, 22)}, None),  # 14 today
        ({"licence": "none"}, "no AM licence"),
        ({"licence": "accompanied"}, None),
        ({"licence": "none", "birth_date": date(1987, 12, 31), "highway_code": True}, None),
        ({"licence": "none", "birth_date": date(1988, 1, 1), "highway_code": True}, "no AM licence"),
        ({"bank_card": False}, "no bank card"),
        ({"deposit_eur": 150}, "deposit 150 EUR"),
    ],
)
def test_eligibility(kw: dict[str, object], reason: str | None) -> None:
    why = ineligibility(applicant(**kw), TODAY)
    assert (why is None) if reason is None else (why is not None and reason in why)


def test_register_to_signed_parts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    register = tmp_path / "register.csv"
    register.write_text(
        "member_id,birth_date,licence,highway_code,deposit_eur,bank_card,card_uid\n"
        "m-1,2000-01-01,B,no,300,yes,0A0B0C0D\n"
        "m-1,2000-01-01,B,no,300,yes,0A0B0C0E\n"
        "m-2,2015-01-01,AM,no,300,yes,01020304\n"
        "m-3,1970-05-05,none,yes,300,yes,05060708\n"
    )
    assert documents_main(["new-central-key", "--out", str(tmp_path / "k.pem")]) == 0
    public = capsys.readouterr().out.split("public_key: ")[1].strip()
    assert documents_main(["build-roster", str(register), "--card-key", "secret", "--version", "3",
                           "--out", str(tmp_path / "roster.json")]) == 0
    out = capsys.readouterr().out
    assert "2 member(s)" in out and "m-2: under 14" in out
    assert documents_main(["sign-document", str(tmp_path / "roster.json"), "--key", str(tmp_path / "k.pem"),
                           "--key-id", "k1", "--out", str(tmp_path / "signed.json"), "--parts", "2"]) == 0
    parts = json.loads((tmp_path / "signed.json").read_text())
    import base64

    keys = {"k1": base64.b64decode(public)}
    heads = [verify(json.dumps(p).encode(), keys)[1] for p in parts]
    assert [(h.part, h.parts, h.version) for h in heads] == [(1, 2, 3), (2, 2, 3)]


def test_bad_register_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    register = tmp_path / "r.csv"
    register.write_text("member_id,birth_date,licence,deposit_eur,bank_card,card_uid\nm,yesterday,B,300,yes,0A\n")
    assert documents_main(["build-roster", str(register), "--card-key", "k", "--version", "1", "--out",
                           str(tmp_path / "o.json")]) == 2
    assert "line 2" in capsys.readouterr().err
