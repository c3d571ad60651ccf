"""The node service: job store, scheduler, stages, watchdog, monitor."""

__all__: list[str] = []  # nothing of its own: import its modules (README, "Layout")
