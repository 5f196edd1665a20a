"""Exponential backoff with full jitter and a cap, deterministic with a seeded random source."""

from __future__ import annotations

import random

import pytest

from invsync.agent.exchange.backoff import RetryPolicy, delays


def test_each_wait_is_drawn_below_its_capped_exponential_step() -> None:
    waits = delays(1.0, 2.0, 5.0, 6, random.Random(7))
    assert len(waits) == 6
    for i, wait in enumerate(waits):
        assert 0.0 <= wait <= min(5.0, 2.0**i)


def test_the_same_seed_gives_the_same_waits_and_they_are_jittered() -> None:
    first = delays(0.5, 2.0, 8.0, 5, random.Random(42))
    assert first == delays(0.5, 2.0, 8.0, 5, random.Random(42))
    rng = random.Random(42)
    assert first == [rng.uniform(0.0, min(8.0, 0.5 * 2.0**i)) for i in range(5)]
    assert len(set(first)) == 5  # jitter: not the bare exponential steps


def test_the_cap_bounds_late_waits() -> None:
    waits = delays(1.0, 10.0, 0.25, 20, random.Random(1))
    assert max(waits) <= 0.25


def test_zero_attempts_is_no_waits_and_bad_parameters_are_refused() -> None:
    assert delays(1.0, 2.0, 4.0, 0, random.Random(0)) == []
    with pytest.raises(ValueError, match="factor >= 1"):
        delays(1.0, 0.5, 4.0, 3, random.Random(0))


def test_the_policy_draws_one_wait_per_retry() -> None:
    policy = RetryPolicy(base=0.1, factor=3.0, cap=1.0, retries=3)
    assert policy.delays(random.Random(5)) == delays(0.1, 3.0, 1.0, 3, random.Random(5))
