"""Pipeline stages: fetch, probe, plan, encode, verify, publish (one module per stage)."""

__all__: list[str] = []  # nothing of its own: import its modules (README, "Layout")
