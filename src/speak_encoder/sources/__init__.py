"""Job sources: where jobs come from and where their results go (Direct API, webhooks,
the legacy 3Speak gateway, the embed gateway)."""

__all__: list[str] = []  # nothing of its own: import its modules (README, "Layout")
