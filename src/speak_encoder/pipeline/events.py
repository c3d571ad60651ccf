"""Progress events the pipeline emits; the CLI draws them, the node (later) stores them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: The stages of one encode, in order.
STAGES = ("fetch", "probe", "plan", "encode", "verify", "store")


@dataclass(frozen=True, slots=True)
class StageEvent:
    stage: str
    fraction: float | None = None  # 0..1 within the stage, None = unknown
    speed: str | None = None  # human text: "2.3x", "12.5 MB/s"
    eta_seconds: float | None = None
    detail: str = ""
    done: bool = False


Reporter = Callable[[StageEvent], None]


def ignore(_event: StageEvent) -> None:
    """A reporter that drops every event."""


__all__ = ["STAGES", "Reporter", "StageEvent", "ignore"]
