"""Drawing pipeline progress in a terminal: a rich progress bar, or plain lines when piped.

``rich`` is imported only when a bar is drawn (a terminal): ``encode --json``, a pipe or a job
of the node never pay for it (~2.5 MB of RSS and ~25 ms at start).
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import TYPE_CHECKING

from speak_encoder.pipeline.events import StageEvent

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class ProgressDisplay:
    """A context manager that is a :data:`~speak_encoder.pipeline.events.Reporter`."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.live = enabled and _stderr_is_terminal()
        self._progress: Progress | None = _bar() if self.live else None
        self._tasks: dict[str, TaskID] = {}
        self._last_plain: str | None = None

    def __enter__(self) -> ProgressDisplay:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, event: StageEvent) -> None:
        if not self.enabled:
            return
        if self._progress is not None:
            self._draw(self._progress, event)
        elif event.done or event.stage != self._last_plain:
            self._last_plain = event.stage
            state = "done" if event.done else "..."
            detail = f"  {event.detail}" if event.detail else ""
            print(f"{event.stage:<7} {state}{detail}", file=sys.stderr, flush=True)

    def _draw(self, progress: Progress, event: StageEvent) -> None:
        task = self._tasks.get(event.stage)
        speed = event.speed or ""
        if task is None:
            task = progress.add_task(
                "", total=1.0, stage=event.stage, speed=speed, detail=event.detail
            )
            self._tasks[event.stage] = task
        completed = 1.0 if event.done else event.fraction
        progress.update(
            task, completed=completed, stage=event.stage, speed=speed, detail=event.detail
        )


def _stderr_is_terminal() -> bool:
    """Whether a live bar makes sense on stderr (rich's own rule, without importing rich)."""
    if os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE") == "1":
        return True
    if os.environ.get("TTY_COMPATIBLE") == "0":
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _bar() -> Progress:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.fields[stage]:<7}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[speed]:>10}"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[detail]}", style="dim"),
        console=Console(stderr=True),
        transient=False,
    )


__all__ = ["ProgressDisplay"]
