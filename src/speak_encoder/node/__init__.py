"""The node service: job store, scheduler, stages, watchdog, monitor."""
