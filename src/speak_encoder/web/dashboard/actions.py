"""The operator's actions (each behind the token of :mod:`.auth`).

* ``POST /api/jobs/{id}/retry`` and ``…/cancel`` — the job store's ``retry`` / ``request_cancel``.
* ``POST /api/pins/retry`` — retry every pending pin now
  (:func:`~speak_encoder.storage.targets.retry_pending` with ``force``); answers the counts.
* ``POST /api/outbox/retry`` — re-arm the given-up outbox reports (pending again, attempts
  reset) so the running deliverers send them again; answers how many.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from speak_encoder.errors import JobNotFound, SpeakEncoderError
from speak_encoder.logs import redact
from speak_encoder.node.models import Job, is_job_id
from speak_encoder.web.dashboard.auth import OperatorAuth
from speak_encoder.web.dashboard.node import DashboardNode
from speak_encoder.web.dashboard.public import public_job

log = logging.getLogger("speak_encoder.web.dashboard")


def job_action_error_status(exc: SpeakEncoderError) -> int:
    """The HTTP status of a refused job action: 404 for a job the store does not know, else
    409."""
    return 404 if isinstance(exc, JobNotFound) else 409


class Actions:
    """The action endpoints over ``node`` (one pin retry at a time)."""

    def __init__(self, node: DashboardNode, auth: OperatorAuth) -> None:
        self.node = node
        self.auth = auth
        self.pins_busy = False

    def job_route(self, name: str, fn: Callable[[str], Job]) -> Route:
        """``POST /api/jobs/{job_id}/<name>``: ``fn(job_id)`` in a thread."""

        async def endpoint(request: Request) -> Response:
            refused = self.auth.refusal(request)
            if refused is not None:
                return refused
            job_id = str(request.path_params["job_id"])
            if not is_job_id(job_id):
                return JSONResponse({"error": "not a job id"}, status_code=404)
            try:
                job = await asyncio.to_thread(fn, job_id)
            except SpeakEncoderError as exc:
                status = job_action_error_status(exc)
                return JSONResponse({"error": redact(str(exc))}, status_code=status)
            log.info("dashboard: %s of job %s by the operator", name, job_id)
            if name == "retry":
                self.node.scheduler.wake()
            return JSONResponse({"job": public_job(job)})

        return Route(f"/api/jobs/{{job_id}}/{name}", endpoint, methods=["POST"])

    async def retry_pins(self, request: Request) -> Response:
        refused = self.auth.refusal(request)
        if refused is not None:
            return refused
        if self.pins_busy:
            return JSONResponse({"error": "a pin retry is already running"}, status_code=409)
        from speak_encoder.storage.targets import retry_pending

        settings, store = self.node.settings, self.node.store
        self.pins_busy = True
        try:
            summary = await retry_pending(settings, store.pin_queue(settings), force=True)
        except SpeakEncoderError as exc:
            return JSONResponse({"error": redact(exc.message)}, status_code=409)
        finally:
            self.pins_busy = False
        try:
            counts: dict[str, int] | None = await asyncio.to_thread(store.pin_counts)
        except Exception:
            counts = None
        log.info(
            "dashboard: pin retry by the operator: %d pinned, %d still failing, %d given up",
            len(summary.done), len(summary.failed), len(summary.expired),
        )  # fmt: skip
        return JSONResponse(
            {"attempted": summary.attempted, "done": len(summary.done),
             "failed": len(summary.failed), "expired": len(summary.expired), "pins": counts}
        )  # fmt: skip

    async def retry_outbox(self, request: Request) -> Response:
        refused = self.auth.refusal(request)
        if refused is not None:
            return refused
        store = self.node.store
        try:
            rearmed = await asyncio.to_thread(store.outbox_rearm)
            counts = await asyncio.to_thread(store.outbox_counts)
        except SpeakEncoderError as exc:
            return JSONResponse({"error": redact(exc.message)}, status_code=503)
        log.info("dashboard: %d given-up outbox report(s) re-armed by the operator", rearmed)
        return JSONResponse({"rearmed": rearmed, "outbox": counts})

    def routes(self) -> list[Route]:
        store = self.node.store
        return [
            self.job_route("retry", store.retry),
            self.job_route("cancel", store.request_cancel),
            Route("/api/pins/retry", self.retry_pins, methods=["POST"]),
            Route("/api/outbox/retry", self.retry_outbox, methods=["POST"]),
        ]


__all__ = ["Actions", "job_action_error_status"]
