"""The enabled job sources, each with a health word, from the state their pollers keep."""

from __future__ import annotations

from typing import Any

from speak_encoder.logs import redact
from speak_encoder.sources.gateway_protocol import Poller
from speak_encoder.web.dashboard.ipfs import ERROR_CHARS
from speak_encoder.web.dashboard.node import DashboardNode


def _source_row(name: str, health: str) -> dict[str, Any]:
    return {"name": name, "enabled": True, "health": health, "registered": None,
            "last_ok_at": None, "last_error": None}  # fmt: skip


def poller_health(name: str, poller: Poller | None) -> dict[str, Any]:
    """A gateway poller's health from the state it keeps (no URL, token or key)."""
    row = _source_row(name, "not started")
    if poller is None:
        return row
    rounds = poller.rounds
    last_ok, error, state = rounds.last_ok_at, rounds.last_error, rounds.state
    row["registered"] = bool(poller.registered)
    row["last_ok_at"] = last_ok if isinstance(last_ok, (int, float)) else None
    row["last_error"] = redact(str(error))[:ERROR_CHARS] if error else None
    if isinstance(state, str) and state:  # e.g. "refused: disabled or banned"
        row["health"] = state
    elif row["last_error"]:
        row["health"] = "failing"
    elif row["last_ok_at"] is None:
        row["health"] = "starting"
    else:
        row["health"] = "ok" if row["registered"] else "ok (not registered)"
    return row


def source_health(node: DashboardNode) -> list[dict[str, Any]]:
    """The enabled job sources, each with a health word (local is always on)."""
    settings = node.settings
    rows = [_source_row("local", "ok")]
    if settings.direct_api_enabled:
        rows.append(_source_row("direct_api", "listening" if node.ready else "not ready"))
    if settings.gateway_enabled:
        rows.append(poller_health("gateway", node.gateway_source))
    if settings.embed_gateway_enabled:
        rows.append(poller_health("embed_gateway", node.embed_source))
    return rows


__all__ = ["poller_health", "source_health"]
