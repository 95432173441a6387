"""The trip tariff: free minutes, then a price per started step.

Default (the commune's): the first 30 minutes are free, then 50 cents per
started half hour — 0:30:00 costs 0, 0:30:01 costs 50, 1:00:01 costs 100.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Tariff:
    free_minutes: int = 30
    step_minutes: int = 30
    step_cents: int = 50
    currency: str = "EUR"

    def price_cents(self, duration_s: float) -> int:
        """Price of a trip of ``duration_s`` seconds, in cents."""
        if duration_s < 0:
            raise ValueError("a duration cannot be negative")
        # Whole milliseconds avoid float edge cases such as 1800.0000001.
        billable_ms = round(duration_s * 1000) - self.free_minutes * 60_000
        if billable_ms <= 0:
            return 0
        step_ms = self.step_minutes * 60_000
        steps = -(-billable_ms // step_ms)  # ceiling: every started step counts
        return steps * self.step_cents
