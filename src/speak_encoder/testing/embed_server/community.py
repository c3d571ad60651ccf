"""The community encoders' gateway routes (JWS-POSTs under ``/api/v0/gateway/``):
``updateNode`` registers the signer's DID, ``myJob`` claims a job with a fresh callback token,
``heartbeat``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from speak_encoder.testing.embed_server.auth import jws_handler
from speak_encoder.testing.embed_server.http import HttpServing
from speak_encoder.testing.embed_server.protocol import (
    CALLBACK_TOKEN_BYTES,
    COMMUNITY_NAME_CHARS,
    MISSING,
    NOT_REGISTERED,
    REFUSED,
    Answer,
)
from speak_encoder.testing.embed_server.records import EmbedJob, Encoder
from speak_encoder.testing.express import truthy


class CommunityRoutes(HttpServing):
    """``updateNode``, ``myJob`` and ``heartbeat`` (JWS-POSTs)."""

    # JWS-POST /api/v0/gateway/*
    async def _update_node_route(self, request: Request) -> Response:
        return await self._serve(request, "updateNode", jws_handler(self._update_node))

    async def _my_job_route(self, request: Request) -> Response:
        return await self._serve(request, "myJob", jws_handler(self._my_job))

    async def _heartbeat_route(self, request: Request) -> Response:
        return await self._serve(request, "heartbeat", jws_handler(self._heartbeat))

    def _update_node(self, did: str, payload: dict[str, Any]) -> Answer:
        info = payload.get("node_info")
        node_info: Any = info if truthy(info) else payload
        if not isinstance(node_info, dict):
            node_info = {}
        name = node_info.get("name", MISSING)
        accounts = node_info.get("cryptoAccounts")
        hive = accounts.get("hive", MISSING) if isinstance(accounts, dict) else MISSING
        if hive is MISSING or not truthy(hive):
            hive = node_info.get("hive_account", MISSING)
        now = time.time()
        with self._cond:
            encoder = self._find_by_did(did)
            if encoder is None:
                encoder = Encoder(name=self.community_name(did), did=did, access="community",
                                  tier="lite", created_at=now)  # fmt: skip
                self._encoders[encoder.name] = encoder
            given = {
                "display_name": name,
                "hive_account": hive,
                "peer_id": node_info.get("peer_id", MISSING),
                "commit_hash": node_info.get("commit_hash", MISSING),
            }
            for attr, value in given.items():
                if value is not MISSING:
                    setattr(encoder, attr, value)
            encoder.last_seen_at = encoder.updated_at = now
            self._changed()
            return {
                "success": True,
                "encoder": {"name": encoder.name, "did": encoder.did, "tier": encoder.tier,
                            "access": encoder.access, "enabled": encoder.enabled},
            }  # fmt: skip

    def _find_by_did(self, did: str) -> Encoder | None:
        return next((e for e in self._encoders.values() if e.did == did), None)

    def _heartbeat(self, did: str, payload: dict[str, Any]) -> Answer:
        with self._cond:
            encoder = self._find_by_did(did)
            if encoder is None:
                return 404, NOT_REGISTERED
            encoder.last_seen_at = time.time()
            return {"success": True}

    def _my_job(self, did: str, payload: dict[str, Any]) -> Answer:
        with self._cond:
            encoder = self._find_by_did(did)
            if encoder is None:
                return 404, NOT_REGISTERED
            if not encoder.enabled or encoder.banned:
                return 403, REFUSED
            encoder.last_seen_at = time.time()
            job = self._claim_community(encoder)
            if job is None:
                return {"success": True, "job": None}
            video = self._videos.get(job.permlink)
            if video is None or not video.input_cid:
                self._reset_job(job)
                return {"success": True, "job": None}
            self._changed()
            return {
                "success": True,
                "job": {
                    "owner": job.owner,
                    "permlink": job.permlink,
                    "input_cid": f"{self.ipfs_gateway}/{video.input_cid}",
                    "short": video.short,
                    "premium": False,
                    "webhook_url": self.webhook_url,
                    "api_key": job.callback_token,
                    "frontend_app": video.frontend_app,
                    "originalFilename": video.original_filename,
                },
            }

    def _claim_community(self, encoder: Encoder) -> EmbedJob | None:
        """``claimNextCommunityJob``: the oldest free long pending job, with a new token."""
        cap = encoder.max_file_size
        for job in self._sorted_jobs():
            if job.status != "pending" or job.premium or job.short:
                continue
            if cap is not None and not (job.file_size is not None and 0 < job.file_size <= cap):
                continue
            now = time.time()
            job.status, job.assigned_worker, job.assigned_at = "encoding", encoder.name, now
            job.updated_at = now
            job.callback_token = secrets.token_hex(CALLBACK_TOKEN_BYTES)
            return job
        return None

    @staticmethod
    def community_name(did: str) -> str:
        """The name ``updateNode`` gives the encoder of ``did``."""
        return f"community-{did[-COMMUNITY_NAME_CHARS:]}"


__all__ = ["CommunityRoutes"]
