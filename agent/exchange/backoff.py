"""Exponential backoff with full jitter and a cap: the waits between retries of an RPC.

Pure and deterministic given its random source, so tests pass a seeded `random.Random`.
Full jitter (each wait drawn uniformly from zero to the capped exponential step) keeps many
agents that lost the same server from retrying in lockstep when it comes back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


def delays(
    base: float, factor: float, cap: float, attempts: int, rng: random.Random
) -> list[float]:
    """The `attempts` waits before each retry, with full jitter.

    The i-th wait is drawn uniformly from [0, min(cap, base * factor**i)].
    """
    if base < 0 or factor < 1 or cap < 0 or attempts < 0:
        raise ValueError(
            f"backoff needs base >= 0, factor >= 1, cap >= 0, attempts >= 0; "
            f"got base={base}, factor={factor}, cap={cap}, attempts={attempts}"
        )
    return [rng.uniform(0.0, min(cap, base * factor**i)) for i in range(attempts)]


@dataclass(frozen=True)
class RetryPolicy:
    """How an RPC that failed for want of a server is retried: `retries` after the first try."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 8.0
    retries: int = 4

    def delays(self, rng: random.Random) -> list[float]:
        return delays(self.base, self.factor, self.cap, self.retries, rng)
