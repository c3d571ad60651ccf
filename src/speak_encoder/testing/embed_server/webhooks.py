"""The encoders' reports: ``POST /webhook`` (complete, failed: requeued or failed for good) and
``POST /webhook/progress``.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from speak_encoder.testing.embed_server.auth import authorized
from speak_encoder.testing.embed_server.http import HttpServing
from speak_encoder.testing.embed_server.protocol import (
    JOB_NOT_FOUND,
    MAX_ENCODE_ATTEMPTS,
    UNAUTHORIZED,
    Outcome,
    record_key,
)
from speak_encoder.testing.embed_server.records import EmbedJob
from speak_encoder.testing.express import is_number, js_string, truthy


class WebhookRoutes(HttpServing):
    """``POST /webhook`` and ``POST /webhook/progress``."""

    # POST /webhook
    async def _webhook_route(self, request: Request) -> Response:
        return await self._serve(request, "webhook", self._webhook, delay=self.webhook_delay)

    def _webhook(self, body: Any, headers: dict[str, str]) -> Outcome:
        fields = body if isinstance(body, dict) else {}
        api_key = headers.get("x-api-key")
        owner, permlink = fields.get("owner"), fields.get("permlink")
        with self._cond:
            if api_key != self.webhook_key:
                if not truthy(owner) or not truthy(permlink) or not api_key:
                    return Outcome(401, UNAUTHORIZED)
                if not authorized(self.webhook_key, api_key, self._job_at(owner, permlink)):
                    return Outcome(401, UNAUTHORIZED)
            status = fields.get("status")
            if status == "complete":
                self._update_video(record_key(permlink), "published",
                                   manifest_cid=fields.get("manifest_cid"),
                                   encoding_progress=100)  # fmt: skip
                job = self._job_at(owner, permlink)
                if job is not None:
                    job.status, job.updated_at = "completed", time.time()
                    job.webhook_received_at = time.time()
                self._changed()
                return Outcome(200, {"success": True,
                                      "message": "Webhook processed successfully"})  # fmt: skip
            if status == "failed":
                return self._webhook_failed(owner, permlink, fields.get("error"))
            return Outcome(400, {"error": "Unknown status"})

    def _webhook_failed(self, owner: Any, permlink: Any, error: Any) -> Outcome:
        job = self._job_at(owner, permlink)
        now = time.time()
        reason = error if truthy(error) else "Encoding failed"
        if job is not None and job.attempt_count < MAX_ENCODE_ATTEMPTS:
            attempt = job.attempt_count + 1
            self._clear_assignment(job)
            job.status, job.webhook_received_at, job.updated_at = "pending", now, now
            job.last_error = (
                f"{js_string(reason)} (attempt {attempt}/{MAX_ENCODE_ATTEMPTS + 1}, requeueing)"
            )
            job.attempt_count += 1
            self._update_video(record_key(permlink), "processing", encoding_progress=0)
            self._changed()
            message = "Webhook processed (failure recorded, job requeued)"
            return Outcome(200, {"success": True, "message": message})
        self._update_video(record_key(permlink), "failed", encoding_progress=0)
        if job is not None:
            job.status, job.webhook_received_at, job.updated_at = "failed", now, now
            job.last_error = reason
        self._changed()
        return Outcome(200, {"success": True, "message": "Webhook processed (failure recorded)"})

    # POST /webhook/progress
    async def _progress_route(self, request: Request) -> Response:
        return await self._serve(request, "webhook/progress", self._progress,
                                 delay=self.progress_delay)  # fmt: skip

    def _progress(self, body: Any, headers: dict[str, str]) -> Outcome:
        fields = body if isinstance(body, dict) else {}
        owner, permlink = fields.get("owner"), fields.get("permlink")
        progress = fields.get("progress")
        if not truthy(owner) or not truthy(permlink) or not is_number(progress):
            return Outcome(400, {"error": "owner, permlink, and progress (number) are required"})
        with self._cond:
            job = self._job_at(owner, permlink)
            if job is None:
                return Outcome(404, JOB_NOT_FOUND)
            if not authorized(self.webhook_key, headers.get("x-api-key"), job):
                return Outcome(401, UNAUTHORIZED)
            stage = fields.get("stage")
            job.status, job.updated_at = "encoding", time.time()
            job.encoding_progress, job.encoding_stage = progress, stage
            self._update_video(record_key(permlink), "processing", encoding_progress=progress)
            self._changed()
        return Outcome(200, {"success": True})

    def _job_at(self, owner: Any, permlink: Any) -> EmbedJob | None:
        if not isinstance(owner, str) or not isinstance(permlink, str):
            return None
        return self._jobs.get((owner, permlink))


__all__ = ["WebhookRoutes"]
