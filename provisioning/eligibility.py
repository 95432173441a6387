"""Who may join: the town hall's registration rules, as a pure function.

A member is eligible when all hold:
- aged 14 or more on the day;
- allowed to drive a licence-free car: an AM licence (or any car/motorbike
  licence, which includes it), or an accompanied-driving certificate, or born
  before 1 January 1988 with the highway code passed (French rule for
  quadricycles);
- a bank card on file and the 300 € deposit paid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

MIN_AGE = 14
DEPOSIT_EUR = 300
LICENCES_WITH_AM = {"AM", "A1", "A2", "A", "B", "BE", "C", "D"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Applicant:
    member_id: str
    birth_date: date
    licence: str  # AM, B, ..., "accompanied", or "none"
    highway_code: bool
    deposit_eur: int
    bank_card: bool


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def ineligibility(applicant: Applicant, today: date) -> str | None:
    """None when eligible, else the first reason, in words for the clerk."""
    if age_on(applicant.birth_date, today) < MIN_AGE:
        return f"under {MIN_AGE}"
    licence = applicant.licence.strip()
    may_drive = (
        licence.upper() in LICENCES_WITH_AM
        or licence.lower() == "accompanied"
        or (applicant.birth_date < date(1988, 1, 1) and applicant.highway_code)
    )
    if not may_drive:
        return "no AM licence, accompanied-driving certificate, or (born before 1988) highway code"
    if not applicant.bank_card:
        return "no bank card on file"
    if applicant.deposit_eur < DEPOSIT_EUR:
        return f"deposit {applicant.deposit_eur} EUR is below {DEPOSIT_EUR} EUR"
    return None
