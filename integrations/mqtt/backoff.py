"""Capped, jittered exponential back-off for reconnecting to the broker."""

from __future__ import annotations

import random


class Backoff:
    """Delays of ``initial * factor**n`` seconds, capped at ``cap``, with
    "equal jitter": each delay is drawn in ``[d/2, d]`` so that stations
    restarting together (a power cut in the village) do not reconnect in step,
    and no delay is ever close to zero.
    """

    def __init__(
        self,
        *,
        initial: float = 1.0,
        cap: float = 60.0,
        factor: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or cap < initial or factor < 1:
            raise ValueError("need 0 < initial <= cap and factor >= 1")
        self._initial = initial
        self._cap = cap
        self._factor = factor
        self._rng = rng or random.Random()
        self.attempts = 0

    def next_delay(self) -> float:
        ceiling = min(self._cap, self._initial * self._factor**self.attempts)
        self.attempts = min(self.attempts + 1, 64)  # no float overflow after days offline
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempts = 0
