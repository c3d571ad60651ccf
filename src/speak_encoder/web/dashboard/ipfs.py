"""The node's IPFS RPC as the dashboard shows it: asked for its ``id`` now and then.

:class:`IpfsProbe` keeps the last answer and runs at most one check at a time, started when a
reader finds the last one older than :data:`IPFS_CHECK_INTERVAL_S`. The check is a background
task the probe owns; the operator app's lifespan (:meth:`IpfsProbe.lifespan`) cancels and awaits
it when the server stops, so no check outlives the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from speak_encoder.config import Settings
from speak_encoder.errors import SpeakEncoderError
from speak_encoder.logs import redact
from speak_encoder.storage.kubo import KuboClient

#: Seconds between two checks of the node's IPFS RPC (``id``), and one check's timeout.
IPFS_CHECK_INTERVAL_S: Final = 30.0
IPFS_CHECK_TIMEOUT_S: Final = 3.0
#: Longest error text shown.
ERROR_CHARS: Final = 300


def ipfs_unknown(settings: Settings) -> dict[str, Any]:
    """The IPFS status before any check: configured or not, nothing known yet."""
    configured = bool(settings.ipfs_api_addr.strip())
    return {
        "configured": configured,
        "ok": None if configured else False,
        "peer_id": None,
        "error": None if configured else "not configured",
        "checked_at": None,
    }


async def check_ipfs(settings: Settings, timeout: float = IPFS_CHECK_TIMEOUT_S) -> dict[str, Any]:
    """Ask the node's IPFS RPC for its ``id`` (short timeouts; never raises)."""
    status = ipfs_unknown(settings)
    if not status["configured"]:
        return status
    status["checked_at"] = time.time()
    try:
        async with KuboClient(
            settings.ipfs_api_addr, connect_timeout=timeout, call_timeout=timeout
        ) as ipfs:
            peer = await asyncio.wait_for(ipfs.peer_id(), timeout * 2)
    except Exception as exc:
        text = exc.message if isinstance(exc, SpeakEncoderError) else str(exc)
        status.update(ok=False, error=redact(text or type(exc).__name__)[:ERROR_CHARS])
        return status
    if peer:
        status.update(ok=True, peer_id=peer)
    else:
        status.update(ok=False, error="the IPFS node answered without a peer id")
    status["checked_at"] = time.time()
    return status


class IpfsProbe:
    """The last IPFS status and the one check that may be running (see the module docstring)."""

    def __init__(self, settings: Settings, *, interval: float = IPFS_CHECK_INTERVAL_S) -> None:
        self.settings = settings
        self.interval = interval
        self.status = ipfs_unknown(settings)
        self._task: asyncio.Task[None] | None = None
        self._started: float | None = None

    async def _check(self) -> None:
        try:
            self.status = await check_ipfs(self.settings)
        except asyncio.CancelledError:  # its event loop ended first: check again next time
            self._started = None
            raise

    async def refresh(self, *, wait: bool) -> None:
        """Start a check when the last one is older than the interval (never two at once).

        ``wait``: when nothing is known yet, wait for that first answer (one-shot requests);
        the event stream never waits, it shows the last known status.
        """
        if not self.status["configured"]:
            return
        now = time.monotonic()
        idle = self._task is None or self._task.done()
        if idle and (self._started is None or now - self._started >= self.interval):
            self._started = now
            self._task = asyncio.create_task(self._check(), name="dashboard-ipfs-check")
        if wait and self.status["checked_at"] is None and self._task is not None:
            await asyncio.wait({self._task}, timeout=IPFS_CHECK_TIMEOUT_S * 2 + 1)

    @property
    def checking(self) -> bool:
        """Whether a check is running now."""
        return self._task is not None and not self._task.done()

    def current(self) -> dict[str, Any]:
        """A copy of the last known status."""
        return dict(self.status)

    async def aclose(self) -> None:
        """Cancel a running check and wait for it (the next reader starts a new one)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """The probe's part of the server's lifespan: its check ends with the server."""
        try:
            yield
        finally:
            await self.aclose()


__all__ = ["IPFS_CHECK_INTERVAL_S", "IpfsProbe", "check_ipfs", "ipfs_unknown"]
