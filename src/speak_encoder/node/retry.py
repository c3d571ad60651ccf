"""Retry as a typed decision: what happens to a job after an attempt ends."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from speak_encoder.backoff import DEFAULT_JITTER, Backoff
from speak_encoder.errors import SpeakEncoderError


class Outcome(enum.Enum):
    RETRY = "retry"  # retry_wait, then run again from the failed stage
    FAIL = "fail"  # failed for good


@dataclass(frozen=True, slots=True)
class RetryDecision:
    outcome: Outcome
    delay_s: float = 0.0
    reason: str = ""


def backoff_delay(
    failures: int,
    *,
    base: float,
    cap: float,
    jitter: float = DEFAULT_JITTER,
    rng: random.Random | None = None,
) -> float:
    """A job's wait before its next attempt: :class:`~speak_encoder.backoff.Backoff`
    (``base × 2^(failures-1)``, capped, ± ``jitter``)."""
    return Backoff(base, cap, jitter).delay(failures, draw=(rng or random).random)


def decide(
    error: SpeakEncoderError,
    *,
    failures_so_far: int,
    max_attempts: int,
    base: float,
    cap: float,
) -> RetryDecision:
    """The fate of a job whose attempt just failed with ``error`` (this failure included)."""
    failures = failures_so_far + 1
    if not error.retryable:
        return RetryDecision(Outcome.FAIL, reason="permanent error: retrying cannot help")
    if failures >= max_attempts:
        return RetryDecision(Outcome.FAIL, reason=f"gave up after {failures} attempts")
    delay = backoff_delay(failures, base=base, cap=cap)
    return RetryDecision(Outcome.RETRY, delay, f"attempt {failures} of {max_attempts} failed")


__all__ = ["Outcome", "RetryDecision", "backoff_delay", "decide"]
