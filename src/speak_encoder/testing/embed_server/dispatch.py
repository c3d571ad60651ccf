"""Managed mode: the dispatcher that pushes pending jobs to managed encoders (``getNextEncoder``'s
choice by tier and size, round-robin per group), its stall check and its background thread.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from typing import Any, Self

import httpx

from speak_encoder.testing.embed_server.protocol import (
    DISPATCH_BATCH,
    DISPATCH_INTERVAL_S,
    DISPATCH_MAX_ATTEMPTS,
    HEADERS_OF_INTEREST,
    STALL_GIVE_UP_ATTEMPTS,
    STALL_RESET_ERROR,
)
from speak_encoder.testing.embed_server.records import (
    DispatchResult,
    EmbedCall,
    EmbedJob,
    Encoder,
    StallOutcome,
)
from speak_encoder.testing.embed_server.state import EmbedState
from speak_encoder.testing.express import json_error, parse_answer

log = logging.getLogger(__name__)


class Dispatcher(EmbedState):
    """The managed-mode dispatcher and its stall check (see the package docstring)."""

    # --- lifecycle (the background dispatcher) ------------------------------------------------

    def start(self) -> Self:
        super().start()
        if self.dispatch_interval is not None:
            self.start_dispatcher(self.dispatch_interval)
        return self

    def stop(self) -> None:
        self.stop_dispatcher()
        super().stop()
        with self._cond:
            client, self._http = self._http, None
        if client is not None:
            client.close()

    def start_dispatcher(self, interval: float = DISPATCH_INTERVAL_S) -> None:
        """Run :meth:`dispatch_once` now and every ``interval`` seconds (a background thread)."""
        if self._dispatcher is not None:
            return
        self._dispatcher_stop.clear()

        def loop() -> None:
            while True:
                try:
                    self.dispatch_once()
                except Exception:  # the real cycle logs and carries on
                    log.exception("embed server: dispatcher cycle failed")
                if self._dispatcher_stop.wait(interval):
                    return

        self._dispatcher = threading.Thread(target=loop, name="embed-dispatcher", daemon=True)
        self._dispatcher.start()

    def stop_dispatcher(self) -> None:
        self._dispatcher_stop.set()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=self.dispatch_timeout + 5)
        self._dispatcher = None

    def reset_stalled(self, older_than_s: float) -> list[StallOutcome]:
        """The dispatcher's stall check: ``encoding`` jobs not updated for ``older_than_s``."""
        cutoff = time.time() - older_than_s
        outcomes: list[StallOutcome] = []
        with self._cond:
            for job in self._sorted_jobs():
                if job.status != "encoding" or not job.updated_at < cutoff:
                    continue
                now = time.time()
                if job.attempt_count >= STALL_GIVE_UP_ATTEMPTS:
                    job.status, job.updated_at = "failed", now
                    job.last_error = f"Stalled {job.attempt_count + 1} times — giving up"
                    self._update_video(job.permlink, "failed")
                    outcomes.append(StallOutcome(job.owner, job.permlink, "failed"))
                    continue
                self._clear_assignment(job)
                job.status, job.last_error, job.updated_at = "pending", STALL_RESET_ERROR, now
                job.attempt_count += 1
                outcomes.append(StallOutcome(job.owner, job.permlink, "reset"))
            if outcomes:
                self._changed()
        return outcomes

    # --- the dispatcher -----------------------------------------------------------------------

    def dispatch_once(self) -> list[DispatchResult]:
        """One dispatcher cycle: the stall check, then up to DISPATCH_BATCH jobs pushed."""
        self.reset_stalled(self.stall_after)
        results: list[DispatchResult] = []
        with self._cond:
            if self._http is None:
                self._http = httpx.Client(timeout=self.dispatch_timeout, follow_redirects=False)
            client = self._http
        for _ in range(DISPATCH_BATCH):
            with self._cond:
                job = self._claim_managed()
                if job is None:
                    break
                claimed = copy.deepcopy(job)
            results.append(self._dispatch(client, claimed))
        return results

    def _claim_managed(self) -> EmbedJob | None:
        for job in self._sorted_jobs():
            if job.status == "pending":
                job.status, job.updated_at = "encoding", time.time()
                self._changed()
                return job
        return None

    def _dispatch(self, client: httpx.Client, job: EmbedJob) -> DispatchResult:
        encoder: Encoder | None = None
        try:
            with self._cond:
                video = self._videos.get(job.permlink)
                if video is None:
                    raise _DispatchError(f"Video not found: {job.permlink}")
                if not video.input_cid:
                    raise _DispatchError(f"Video has no input_cid: {job.permlink}")
                file_size = video.size if video.size is not None else job.file_size
                request = {
                    "owner": job.owner,
                    "permlink": job.permlink,
                    "input_cid": f"{self.ipfs_gateway}/{video.input_cid}",
                    "short": video.short,
                    "premium": job.premium,
                    "webhook_url": self.webhook_url,
                    "api_key": self.webhook_key,
                    "frontend_app": video.frontend_app,
                    "originalFilename": video.original_filename,
                }
                encoder = copy.deepcopy(self._next_encoder(job.premium, file_size, video.short))
            job_id = self._post_encode(client, encoder, request)
        except _DispatchError as exc:
            return self._dispatch_failed(job, encoder, exc.message)
        with self._cond:
            live = self._jobs.get((job.owner, job.permlink))
            if live is not None:
                live.status, live.encoder_job_id = "encoding", job_id
                live.assigned_worker, live.assigned_at = encoder.name, time.time()
                live.last_error, live.updated_at = None, time.time()
            self._changed()
        return DispatchResult(job.owner, job.permlink, encoder.name, True, job_id)

    def _post_encode(self, client: httpx.Client, encoder: Encoder, request: dict[str, Any]) -> Any:
        url = f"{encoder.url}/encode"
        headers = {"Content-Type": "application/json", "X-API-Key": encoder.api_key,
                   "User-Agent": "node"}  # fmt: skip
        content = json.dumps(request, separators=(",", ":"), ensure_ascii=False).encode()
        sent, wall = time.monotonic(), time.time()
        kept = {k.lower(): v for k, v in headers.items() if k.lower() in HEADERS_OF_INTEREST}
        status, answer, error = 0, None, None
        try:
            try:
                response = client.post(url, content=content, headers=headers)
            except httpx.HTTPError:
                raise _DispatchError("fetch failed") from None
            status, answer = response.status_code, parse_answer(response.content)
            if not response.is_success:
                raise _DispatchError(f"Encoder API error: {status} - {response.text}")
            try:
                result = json.loads(response.content)
            except ValueError:
                raise _DispatchError(json_error(response.text)) from None
            return result.get("job_id") if isinstance(result, dict) else None
        except _DispatchError as exc:
            error = exc.message
            raise
        finally:
            self._record(EmbedCall("encode", "POST", url, "out", kept, request, status, answer,
                                   sent, time.monotonic(), wall, error=error))  # fmt: skip

    def _dispatch_failed(
        self, job: EmbedJob, encoder: Encoder | None, message: str
    ) -> DispatchResult:
        with self._cond:
            live = self._jobs.get((job.owner, job.permlink))
            status = "pending"
            if live is not None:
                live.attempt_count += 1
                live.status, live.last_error, live.updated_at = "pending", message, time.time()
                if job.attempt_count >= DISPATCH_MAX_ATTEMPTS:
                    live.status = status = "failed"
                    live.last_error = f"Max attempts exceeded: {message}"
                    self._update_video(job.permlink, "failed")
            self._changed()
        name = encoder.name if encoder is not None else None
        return DispatchResult(job.owner, job.permlink, name, False, error=message,
                              job_status=status)  # fmt: skip

    def _next_encoder(self, premium: bool, file_size: int | None, short: bool) -> Encoder:
        candidates = [e for e in self._encoders.values() if e.enabled and e.access == "managed"]
        if short:
            sized = [e for e in candidates if _fits(e, file_size)]
            return self._pick(sized or candidates, "short")
        if premium:
            for tier in ("performance", "standard"):
                group = _by_tier_and_size(candidates, tier, file_size)
                if group:
                    return self._pick(group, tier)
            raise _DispatchError("No suitable managed encoders available for premium job")
        for tier, key in (("standard", "free-standard"), ("lite", "free-lite")):
            group = _by_tier_and_size(candidates, tier, file_size)
            if group:
                return self._pick(group, key)
        raise _DispatchError("No suitable encoders available for free job")

    def _pick(self, encoders: list[Encoder], key: str) -> Encoder:
        if not encoders:
            raise _DispatchError(f"No encoders available for tier: {key}")
        counter = self._round_robin.get(key, 0)
        self._round_robin[key] = counter + 1
        return encoders[counter % len(encoders)]


class _DispatchError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- small helpers -----------------------------------------------------------------------------


def _fits(encoder: Encoder, file_size: int | None) -> bool:
    """Within the encoder's ``max_file_size`` (none: any size; an unknown size fits no cap)."""
    cap = encoder.max_file_size
    return cap is None or (file_size is not None and file_size <= cap)


def _by_tier_and_size(encoders: list[Encoder], tier: str, file_size: int | None) -> list[Encoder]:
    return [e for e in encoders if e.tier == tier and _fits(e, file_size)]


__all__ = ["Dispatcher"]
