"""Drawing pipeline progress in a terminal: a rich progress bar, or plain lines when piped."""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from speak_encoder.pipeline.events import StageEvent


class ProgressDisplay:
    """A context manager that is a :data:`~speak_encoder.pipeline.events.Reporter`."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.console = Console(stderr=True)
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self._progress = Progress(
            TextColumn("[bold]{task.fields[stage]:<7}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[speed]:>10}"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[detail]}", style="dim"),
            console=self.console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._last_plain: str | None = None

    def __enter__(self) -> ProgressDisplay:
        if self.live:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live:
            self._progress.stop()

    def __call__(self, event: StageEvent) -> None:
        if not self.enabled:
            return
        if self.live:
            self._draw(event)
        elif event.done or event.stage != self._last_plain:
            self._last_plain = event.stage
            state = "done" if event.done else "..."
            detail = f"  {event.detail}" if event.detail else ""
            print(f"{event.stage:<7} {state}{detail}", file=sys.stderr, flush=True)

    def _draw(self, event: StageEvent) -> None:
        task = self._tasks.get(event.stage)
        speed = event.speed or ""
        if task is None:
            task = self._progress.add_task(
                "", total=1.0, stage=event.stage, speed=speed, detail=event.detail
            )
            self._tasks[event.stage] = task
        completed = 1.0 if event.done else event.fraction
        self._progress.update(
            task, completed=completed, stage=event.stage, speed=speed, detail=event.detail
        )


__all__ = ["ProgressDisplay"]
