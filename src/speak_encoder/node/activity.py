"""What a running job is doing right now: in memory, fed by progress callbacks.

The watchdog reads ``last_progress`` (any stage counts: bytes downloaded or uploaded, frames
encoded); the job's heartbeat writes the fractions to the store, throttled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from speak_encoder.node.models import Stage


@dataclass
class Activity:
    job_id: str
    started: float = field(default_factory=time.monotonic)
    last_progress: float = field(default_factory=time.monotonic)
    stage: Stage = Stage.FETCH
    fractions: dict[str, float] = field(default_factory=dict)
    detail: str = ""
    speed: str = ""
    eta_seconds: float | None = None
    dirty: bool = False
    #: Why the job's task was cancelled by the node (shutdown, operator, watchdog …).
    cancel_reason: str | None = None

    def enter(self, stage: Stage) -> None:
        self.stage = stage
        self.fractions.setdefault(stage.value, 0.0)
        self.touch()

    def beat(
        self,
        fraction: float | None = None,
        *,
        detail: str | None = None,
        speed: str | None = None,
        eta_seconds: float | None = None,
    ) -> None:
        """Progress was made in the current stage."""
        if fraction is not None:
            self.fractions[self.stage.value] = max(0.0, min(1.0, fraction))
        if detail is not None:
            self.detail = detail
        if speed is not None:
            self.speed = speed
        self.eta_seconds = eta_seconds
        self.touch()

    def touch(self) -> None:
        self.last_progress = time.monotonic()
        self.dirty = True

    def idle_seconds(self, now: float | None = None) -> float:
        return (now if now is not None else time.monotonic()) - self.last_progress

    def age_seconds(self, now: float | None = None) -> float:
        return (now if now is not None else time.monotonic()) - self.started


__all__ = ["Activity"]
