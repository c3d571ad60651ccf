"""Content addressing and storage backends (UnixFS/CIDs, CAR, Kubo RPC, remote pins)."""

__all__: list[str] = []  # nothing of its own: import its modules (README, "Layout")
