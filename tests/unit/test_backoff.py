"""The one exponential back-off (:mod:`speak_encoder.backoff`) and its users' policies."""

from __future__ import annotations

import itertools
import random

import pytest

from speak_encoder.backoff import Backoff, BackoffCounter, jittered
from speak_encoder.node.retry import backoff_delay
from speak_encoder.node.store.pins import _backoff as pin_backoff
from speak_encoder.pipeline.fetch import RESUME_BACKOFF


def test_doubles_from_base_up_to_the_cap() -> None:
    policy = Backoff(10, 100, jitter=0.0)
    assert [policy.ceiling(n) for n in range(1, 7)] == [10, 20, 40, 80, 100, 100]
    assert [policy.delay(n) for n in range(1, 7)] == [10, 20, 40, 80, 100, 100]


def test_zero_or_negative_failures_wait_the_base() -> None:
    assert Backoff(3, 50, jitter=0.0).ceiling(0) == 3
    assert Backoff(3, 50, jitter=0.0).ceiling(-4) == 3


def test_huge_failure_counts_stay_at_the_cap() -> None:
    policy = Backoff(0.5, 600)
    assert policy.ceiling(10**6) == 600
    assert 480 <= policy.delay(10**6) <= 720


def test_jitter_spreads_within_its_fraction() -> None:
    policy = Backoff(10, 100)  # ± 20 % by default
    rng = random.Random(7)
    delays = {round(policy.delay(3, draw=rng.random), 3) for _ in range(200)}
    assert len(delays) > 150 and all(32 <= d <= 48 for d in delays)
    assert min(delays) < 34 and max(delays) > 46  # both ends are reached


def test_the_draw_can_be_pinned() -> None:
    policy = Backoff(8, 1000, jitter=0.1)
    assert policy.delay(2, draw=lambda: 0.0) == pytest.approx(16 * 0.9)
    assert policy.delay(2, draw=lambda: 0.5) == 16
    assert policy.delay(2, draw=lambda: 1.0) == pytest.approx(16 * 1.1)


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="base"):
        Backoff(-1, 10)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(1, 10, jitter=1.5)


def test_counter_counts_failures_in_a_row_and_resets() -> None:
    draws = itertools.cycle([0.5])
    counter = BackoffCounter(Backoff(2, 10, jitter=0.2), draw=lambda: next(draws))
    assert [counter.next_delay() for _ in range(5)] == [2, 4, 8, 10, 10]
    assert counter.failures == 5
    counter.reset()
    assert counter.failures == 0 and counter.next_delay() == 2


def test_jittered_fixed_wait() -> None:
    assert jittered(100, 0.2, draw=lambda: 0.5) == 100
    assert jittered(100, 0.2, draw=lambda: 0.0) == pytest.approx(80)
    assert jittered(0, 0.2) == 0


def test_users_share_the_policy() -> None:
    # the scheduler's job retries
    assert [backoff_delay(n, base=10, cap=100, jitter=0.0) for n in (1, 2, 5)] == [10, 20, 100]
    # the pin queue's stored due times (no jitter)
    assert [pin_backoff(n, 60, 300) for n in (1, 2, 3, 4)] == [60, 120, 240, 300]
    # the fetch stage's resumes: 0.5 s doubling to 5 s
    assert [RESUME_BACKOFF.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]
