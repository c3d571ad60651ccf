"""Retry as a typed decision: what happens to a job after an attempt ends."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

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
    failures: int, *, base: float, cap: float, jitter: float = 0.2, rng: random.Random | None = None
) -> float:
    """Exponential back-off: base × 2^(failures-1), capped, ± ``jitter`` (a fraction)."""
    raw = min(cap, base * 2.0 ** max(0, failures - 1))
    spread: float = (rng or random).uniform(-jitter, jitter)
    return max(0.0, float(raw * (1 + spread)))


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
