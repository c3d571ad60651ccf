"""The embed server's records and the tests' view of them: :class:`EmbedState`, the base of
every part of :class:`~speak_encoder.testing.embed_server.EmbedServer`.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

import httpx
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from speak_encoder.testing.embed_server.protocol import (
    DEFAULT_WEBHOOK_KEY,
    DISPATCH_TIMEOUT_S,
    IPFS_GATEWAY,
    STALL_AFTER_S,
    WAIT_RECHECK_S,
)
from speak_encoder.testing.embed_server.records import EmbedCall, EmbedJob, Encoder, Video
from speak_encoder.testing.serving import DEFAULT_HANG_S, ReferenceServer

T = TypeVar("T")


class EmbedState(ReferenceServer):
    """The records under one lock, their updates (the real ``Database`` methods), the call
    log, and the tests' controls: adding records, snapshots, waits and holds."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_key: str = DEFAULT_WEBHOOK_KEY,
        webhook_url: str | None = None,
        ipfs_gateway: str = IPFS_GATEWAY,
        progress_delay: float = 0.0,
        webhook_delay: float = 0.0,
        stall_after: float = STALL_AFTER_S,
        dispatch_interval: float | None = None,
        dispatch_timeout: float = DISPATCH_TIMEOUT_S,
        hang_seconds: float = DEFAULT_HANG_S,
    ) -> None:
        super().__init__(host=host, port=port, hang_seconds=hang_seconds)
        self.webhook_key = webhook_key
        self._webhook_url = webhook_url
        self.ipfs_gateway = ipfs_gateway.rstrip("/")
        self.progress_delay = progress_delay
        self.webhook_delay = webhook_delay
        self.stall_after = stall_after
        self.dispatch_interval = dispatch_interval
        self.dispatch_timeout = dispatch_timeout
        self._videos: dict[str, Video] = {}
        self._jobs: dict[tuple[str, str], EmbedJob] = {}
        self._encoders: dict[str, Encoder] = {}
        self._calls: list[EmbedCall] = []
        self._seq = 0
        self._changes = 0  # bumped on every change (wait_for)
        self._in_flight: dict[str, int] = {}  # route → requests received, not yet answered
        self._holds: dict[str, threading.Event] = {}
        self._round_robin: dict[str, int] = {}
        self._cond = threading.Condition(threading.RLock())
        self._dispatcher: threading.Thread | None = None
        self._dispatcher_stop = threading.Event()
        self._http: httpx.Client | None = None  # the dispatcher's (created on first use)
        self.app = Starlette(routes=self._routes())

    @property
    def webhook_url(self) -> str:
        """The ``webhook_url`` handed to encoders (the real ``WEBHOOK_URL``): ``<url>/webhook``."""
        return self._webhook_url or f"{self.url}/webhook"

    def _routes(self) -> list[BaseRoute]:
        """The app's routes (:class:`~speak_encoder.testing.embed_server.EmbedServer`'s)."""
        raise NotImplementedError

    # --- test controls ------------------------------------------------------------------------

    def add_video(
        self,
        owner: str,
        permlink: str,
        input_cid: str,
        *,
        short: bool = False,
        premium: bool = False,
        frontend_app: str | None = None,
        original_filename: str | None = None,
        size: int | None = None,
    ) -> EmbedJob:
        """A video whose upload is pinned (``processing``) and its ``pending`` job (as
        ``processUploadAsync`` + ``createEncodeJob`` leave them); returns the job."""
        with self._cond:
            if permlink in self._videos or (owner, permlink) in self._jobs:
                raise ValueError(f"E11000 duplicate key: {owner}/{permlink} already exists")
            now = time.time()
            self._videos[permlink] = Video(
                owner=owner, permlink=permlink, input_cid=input_cid, short=short,
                frontend_app=frontend_app, original_filename=original_filename, size=size,
                created_at=now, updated_at=now,
            )  # fmt: skip
            self._seq += 1
            job = EmbedJob(
                owner=owner, permlink=permlink, premium=premium, short=short, file_size=size,
                created_at=now, updated_at=now, seq=self._seq,
            )  # fmt: skip
            self._jobs[(owner, permlink)] = job
            self._changed()
            return copy.deepcopy(job)

    def video(self, permlink: str) -> Video:
        with self._cond:
            return copy.deepcopy(self._videos[permlink])

    def videos(self) -> list[Video]:
        with self._cond:
            return [copy.deepcopy(v) for v in self._videos.values()]

    def job(self, owner: str, permlink: str) -> EmbedJob:
        with self._cond:
            return copy.deepcopy(self._jobs[(owner, permlink)])

    def jobs(self) -> list[EmbedJob]:
        with self._cond:
            return [copy.deepcopy(j) for j in self._sorted_jobs()]

    def encoder(self, name_or_did: str) -> Encoder:
        """An encoder by its name, or a community encoder by its DID."""
        with self._cond:
            found = self._find_encoder(name_or_did)
            if found is None:
                raise KeyError(name_or_did)
            return copy.deepcopy(found)

    def encoders(self) -> list[Encoder]:
        with self._cond:
            return [copy.deepcopy(e) for e in self._encoders.values()]

    def calls(
        self,
        route: str | None = None,
        *,
        did: str | None = None,
        direction: Literal["in", "out"] | None = None,
    ) -> list[EmbedCall]:
        with self._cond:
            return [
                c
                for c in self._calls
                if (route is None or c.route == route)
                and (did is None or c.did == did)
                and (direction is None or c.direction == direction)
            ]

    def offers(self, did: str | None = None) -> list[dict[str, Any]]:
        """The jobs ``myJob`` handed out (to ``did``), oldest first."""
        answers = [c.answer for c in self.calls("myJob", did=did) if c.status == 200]
        return [a["job"] for a in answers if isinstance(a, dict) and isinstance(a.get("job"), dict)]

    def pending_requests(self, route: str) -> int:
        """Requests of ``route`` received and not answered yet (held, delayed or hanging)."""
        with self._cond:
            return self._in_flight.get(route, 0)

    @contextlib.contextmanager
    def hold(self, route: str) -> Iterator[None]:
        """Requests of ``route`` that arrive inside this block wait until it ends before they
        are processed (a receiver that is slow for as long as a test needs, deterministically)."""
        gate = threading.Event()
        with self._cond:
            self._holds[route] = gate
        try:
            yield
        finally:
            with self._cond:
                self._holds.pop(route, None)
            gate.set()

    def wait_for(
        self, predicate: Callable[[], T | None], timeout: float = 10.0, what: str = ""
    ) -> T:
        """Wait until ``predicate()`` is truthy and return its value; AssertionError after
        ``timeout`` seconds. Re-checked after every change of this server and at least every
        ``WAIT_RECHECK_S`` (so it may also watch something else, e.g. a node's log). The
        predicate runs without this server's lock held: it may even call the server over HTTP."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                seen = self._changes
            value = predicate()
            if value:
                return value
            with self._cond:
                left = deadline - time.monotonic()
                if left <= 0:
                    recent = [(c.route, c.status) for c in self._calls[-8:]]
                    raise AssertionError(
                        f"timed out after {timeout:g} s waiting for {what or repr(predicate)}; "
                        f"last calls: {recent}"
                    )
                if self._changes == seen:
                    self._cond.wait(min(left, WAIT_RECHECK_S))

    def wait_for_calls(
        self,
        route: str,
        count: int = 1,
        *,
        where: Callable[[EmbedCall], bool] | None = None,
        timeout: float = 10.0,
    ) -> list[EmbedCall]:
        """Wait until ``count`` calls of ``route`` (matching ``where``) were answered."""

        def matching() -> list[EmbedCall] | None:
            found = [c for c in self.calls(route) if where is None or where(c)]
            return found if len(found) >= count else None

        return self.wait_for(matching, timeout, f"{count} call(s) of {route}")

    # --- record updates (the real Database methods) -------------------------------------------

    def _changed(self) -> None:
        """Wake :meth:`wait_for` (the lock is held)."""
        self._changes += 1
        self._cond.notify_all()

    def _sorted_jobs(self) -> list[EmbedJob]:
        return sorted(self._jobs.values(), key=lambda j: (j.created_at, j.seq))

    def _find_encoder(self, name_or_did: str) -> Encoder | None:
        found = self._encoders.get(name_or_did)
        if found is None:
            found = next((e for e in self._encoders.values() if e.did == name_or_did), None)
        return found

    def _update_video(self, permlink: str, status: str, **data: Any) -> None:
        video = self._videos.get(permlink)
        if video is None:
            return  # updateOne on a missing document: nothing
        video.status, video.updated_at = status, time.time()
        for key, value in data.items():
            setattr(video, key, value)

    @staticmethod
    def _clear_assignment(job: EmbedJob) -> None:
        job.assigned_worker = job.encoder_job_id = job.assigned_at = None
        job.encoding_progress = job.encoding_stage = None

    def _reset_job(self, job: EmbedJob) -> None:
        """``resetJob`` (the callback token is left as it is)."""
        self._clear_assignment(job)
        job.status, job.attempt_count, job.last_error = "pending", 0, None
        job.updated_at = time.time()

    def _record(self, call: EmbedCall) -> None:
        with self._cond:
            self._calls.append(call)
            self._changed()


__all__ = ["EmbedState"]
