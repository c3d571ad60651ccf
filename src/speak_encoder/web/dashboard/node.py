"""What the dashboard reads from the running node, and the update notice it shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from speak_encoder.sources.gateway_protocol import Poller

if TYPE_CHECKING:
    from speak_encoder.config import Settings
    from speak_encoder.node.monitor import Monitor
    from speak_encoder.node.scheduler import Scheduler
    from speak_encoder.node.store import JobStore


class UpdatingPoller(Poller, Protocol):
    """The legacy gateway's poller: a :class:`Poller` that also hears of newer versions
    (``heartbeat``'s ``needs_update``)."""

    @property
    def needs_update(self) -> bool | None:
        """What the last ``heartbeat`` said (``None``: nothing yet)."""

    @property
    def latest_version(self) -> str | None:
        """The newest version the gateway announced."""


class DashboardNode(Protocol):
    """What the dashboard reads from the running :class:`~speak_encoder.service.Service`."""

    settings: Settings
    store: JobStore
    scheduler: Scheduler
    monitor: Monitor
    started_at: float
    node: str
    ready: bool

    @property
    def gateway_source(self) -> UpdatingPoller | None:
        """The legacy gateway's poller (``None``: not enabled, or not started yet)."""

    @property
    def embed_source(self) -> Poller | None:
        """The embed gateway's poller (``None``: not enabled, or not started yet)."""


@dataclass(frozen=True, slots=True)
class UpdateNotice:
    needs_update: bool | None
    latest_version: str | None


def update_notice_of(node: DashboardNode) -> UpdateNotice:
    """What the legacy gateway said of newer versions (nothing without its poller)."""
    source = node.gateway_source
    if source is None:
        return UpdateNotice(None, None)
    return UpdateNotice(source.needs_update, source.latest_version)


__all__ = ["DashboardNode", "UpdateNotice", "UpdatingPoller", "update_notice_of"]
