"""One exponential back-off for every retry of the node.

A :class:`Backoff` is a policy: the wait after the ``n``-th failure in a row is
``base × 2^(n-1)``, at most ``cap``, then spread by ± ``jitter`` (a fraction) so that a fleet of
nodes that failed together does not retry together. It is used by:

* the scheduler (a job's retry: ``RETRY_BASE``/``RETRY_MAX``, ± 20 %),
* the pin queue (``PIN_RETRY_BASE``/``PIN_RETRY_MAX``, no jitter: a stored due time),
* the fetch stage's resumes (:data:`~speak_encoder.pipeline.fetch.RESUME_BACKOFF`, no jitter),
* the gateway pollers (:class:`BackoffCounter`: rounds in a row that failed) and the gateway
  report deliverer,
* the webhook deliverer (``WEBHOOK_RETRY_BASE``/``WEBHOOK_RETRY_MAX``, ± 10 %).

The random draw can be injected (``draw``: a callable returning a float in [0, 1)), so tests
can pin it. This module imports nothing of speak-encoder.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

#: The default spread of a wait: ± 20 %.
DEFAULT_JITTER: Final = 0.2
#: Doublings beyond this change nothing (any cap is reached) and would overflow a float.
MAX_DOUBLINGS: Final = 64

Draw = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Backoff:
    """``base × 2^(failures-1)`` seconds, capped at ``cap``, ± ``jitter`` (a fraction of it)."""

    base: float
    cap: float
    jitter: float = DEFAULT_JITTER

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError(f"a back-off needs base ≥ 0 and cap ≥ 0 (got {self.base}, {self.cap})")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"the jitter is a fraction in [0, 1) (got {self.jitter})")

    def ceiling(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row, before jitter (``failures`` ≤ 1: base)."""
        doublings = min(max(0, failures - 1), MAX_DOUBLINGS)
        return float(min(self.cap, self.base * 2.0**doublings))

    def delay(self, failures: int, *, draw: Draw = random.random) -> float:
        """The jittered wait after ``failures`` failures in a row (never negative)."""
        raw = self.ceiling(failures)
        if not self.jitter:
            return raw
        spread = -self.jitter + 2 * self.jitter * draw()
        return max(0.0, raw * (1 + spread))

    def counter(self) -> BackoffCounter:
        """A fresh count of failures in a row under this policy."""
        return BackoffCounter(self)


class BackoffCounter:
    """Failures in a row under one :class:`Backoff`: :meth:`next_delay` after each failure,
    :meth:`reset` after a success."""

    def __init__(self, policy: Backoff, *, draw: Draw = random.random) -> None:
        self.policy = policy
        self.failures = 0
        self._draw = draw

    def next_delay(self) -> float:
        """Count one more failure; the wait before trying again."""
        self.failures += 1
        return self.policy.delay(self.failures, draw=self._draw)

    def reset(self) -> None:
        self.failures = 0


def jittered(
    seconds: float, spread: float = DEFAULT_JITTER, *, draw: Draw = random.random
) -> float:
    """``seconds`` ± ``spread`` (a fraction), never negative: a fixed wait that does not
    synchronise a fleet."""
    return max(0.0, seconds * (1 + (-spread + 2 * spread * draw())))


__all__ = ["DEFAULT_JITTER", "Backoff", "BackoffCounter", "jittered"]
