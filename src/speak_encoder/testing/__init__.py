"""Faithful test doubles shared by the test-suite and local development."""

__all__: list[str] = []  # nothing of its own: import its modules (README, "Layout")
