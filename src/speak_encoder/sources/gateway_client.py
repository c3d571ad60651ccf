"""The legacy 3Speak gateway's routes (docs/protocols.md §2), one method each.

:class:`LegacyGatewayClient` sends ``updateNode``, ``getJob``, ``myJob``, ``acceptJob``,
``jobstatus/{id}``, ``pingJob``, ``finishJob``, ``failJob``, ``rejectJob``, ``heartbeat`` and
``stats``, and turns each answer into a value or an error of
:mod:`~speak_encoder.sources.gateway_protocol`; :func:`fail_body` is the exact ``failJob``
payload. The hooks (:mod:`~speak_encoder.sources.gateway_hooks`) and the poller
(:mod:`~speak_encoder.sources.gateway`) use it.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import httpx

from speak_encoder import __version__
from speak_encoder.config import Settings
from speak_encoder.node.identity import NodeIdentity, normalize_did
from speak_encoder.node.models import OutboxItem
from speak_encoder.sources.gateway_protocol import (
    GatewayClient,
    GatewayError,
    GatewayRejected,
    is_done_answer,
    is_not_ours_answer,
    is_race_answer,
    iso_now,
    json_object,
    raise_for_answer,
)

log = logging.getLogger(__name__)

#: Outbox kinds of the gateway's reports (the webhook deliverer leaves them alone).
KIND_FINISH: Final = "gateway.finishJob"
KIND_FAIL: Final = "gateway.failJob"
KIND_REJECT: Final = "gateway.rejectJob"
GATEWAY_KINDS: Final = frozenset({KIND_FINISH, KIND_FAIL, KIND_REJECT})


def fail_body(job_id: str, error: str, *, retryable: bool) -> dict[str, Any]:
    """The exact §2 ``failJob`` payload."""
    now = iso_now()
    return {
        "job_id": job_id,
        "error": {
            "error": error,
            "timestamp": now,
            "retryable": retryable,
            "encoder_version": __version__,
        },
        "timestamp": now,
        "encoder_time": int(time.time() * 1000),
    }


class LegacyGatewayClient(GatewayClient):
    """One method per §2 route. Raises :class:`GatewayError` (and subclasses) on failure."""

    def __init__(
        self,
        settings: Settings,
        identity: NodeIdentity,
        *,
        base_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(settings, identity, base_url or settings.gateway_url, transport=transport)
        self.did = identity.did

    def owns(self, status: dict[str, Any]) -> bool:
        """Whether a ``jobstatus`` answer names this node as ``assigned_to``."""
        assigned = status.get("assigned_to")
        return isinstance(assigned, str) and normalize_did(assigned) == normalize_did(self.did)

    async def stats(self) -> dict[str, Any]:
        return json_object(await self.http.get("stats"))

    async def get_job(self) -> dict[str, Any] | None:
        """An unassigned job, or ``None`` (404)."""
        answer = await self.http.get("getJob")
        if answer.status == 404:
            return None
        job = json_object(answer)
        return job or None

    async def job_status(self, job_id: str) -> dict[str, Any] | None:
        """``{"assigned_to", "status", …}``, or ``None`` for an unknown job (404)."""
        answer = await self.http.get(f"jobstatus/{job_id}")
        if answer.status == 404:
            return None
        return json_object(answer)

    async def accept_job(self, job_id: str) -> bool:
        """Claim a job; ``False`` when another node got it (a race answer)."""
        answer = await self.http.post_jws("acceptJob", {"job_id": job_id})
        if answer.ok:
            return True
        if is_race_answer(answer):
            log.debug("acceptJob %s: %s (another node got it)", job_id, answer.describe())
            return False
        raise_for_answer(answer)
        return True  # pragma: no cover - raise_for_answer raised

    async def ping_job(self, job_id: str, progress_pct: float, download_pct: float) -> bool:
        """``False`` when the gateway says the job is not ours (any more)."""
        answer = await self.http.post_jws(
            "pingJob",
            {"job_id": job_id, "progressPct": progress_pct, "download_pct": download_pct},
        )
        if answer.ok:
            return True
        if is_not_ours_answer(answer):
            log.debug("pingJob %s: %s", job_id, answer.describe())
            return False
        raise_for_answer(answer)
        return True  # pragma: no cover

    async def finish_job(self, job_id: str, cid: str) -> None:
        """Report completion. A 5xx saying "already/completed/duplicate" is a success; a
        ``{"status": "error"}`` answer is :class:`GatewayRejected`."""
        answer = await self.http.post_jws("finishJob", {"job_id": job_id, "output": {"cid": cid}})
        data = answer.obj
        if 200 <= answer.status < 300:
            if data is not None and data.get("status") == "error":
                raise GatewayRejected(f"finishJob: {answer.describe()}", status=answer.status)
            if data is None and answer.text.startswith("an HTML page"):
                raise GatewayError(f"finishJob: {answer.describe()}", status=answer.status)
            return  # a missing status is a success
        if is_done_answer(answer):
            log.info("finishJob %s: %s — already done: success", job_id, answer.message)
            return
        raise_for_answer(answer)

    async def fail_job(self, payload: dict[str, Any]) -> None:
        answer = await self.http.post_jws("failJob", payload)
        raise_for_answer(answer)

    async def reject_job(self, job_id: str) -> None:
        answer = await self.http.post_jws("rejectJob", {"job_id": job_id})
        if is_race_answer(answer) or answer.status == 404:
            return  # not ours any more: nothing to give back
        raise_for_answer(answer)

    async def deliver(self, item: OutboxItem) -> None:
        """Send one outbox item of this module (raises :class:`GatewayError` on failure)."""
        payload = dict(item.payload)
        job_id = str(payload.get("job_id", ""))
        if item.kind == KIND_FINISH:
            output = payload.get("output")
            cid = output.get("cid") if isinstance(output, dict) else None
            if not isinstance(cid, str) or not cid:
                raise GatewayRejected("finishJob: the stored report has no CID")
            await self.finish_job(job_id, cid)
        elif item.kind == KIND_FAIL:
            await self.fail_job(payload)
        elif item.kind == KIND_REJECT:
            await self.reject_job(job_id)
        else:
            raise GatewayRejected(f"unknown gateway report kind {item.kind!r}")


__all__ = [
    "GATEWAY_KINDS",
    "KIND_FAIL",
    "KIND_FINISH",
    "KIND_REJECT",
    "LegacyGatewayClient",
    "fail_body",
]
