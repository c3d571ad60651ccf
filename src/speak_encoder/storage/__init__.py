"""Content addressing and storage backends (UnixFS/CIDs, CAR, Kubo RPC, remote pins)."""
