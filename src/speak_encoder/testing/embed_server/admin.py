"""The embed server's admin actions: adding, changing and removing encoders, and
``redispatch`` (``resetJob``).
"""

from __future__ import annotations

import copy
import time
from typing import Any

from speak_encoder.testing.embed_server.protocol import JOB_NOT_FOUND, MISSING, TIERS
from speak_encoder.testing.embed_server.records import EmbedAdminError, Encoder
from speak_encoder.testing.embed_server.state import EmbedState


class AdminActions(EmbedState):
    """Managed encoders and the admin routes (``/admin/…`` in the real server)."""

    def add_managed_encoder(
        self,
        name: str,
        url: str,
        api_key: str,
        *,
        enabled: bool = True,
        tier: str = "standard",
        max_file_size: int | None = None,
    ) -> Encoder:
        """A managed encoder the dispatcher pushes jobs to (``POST /admin/encoders``); jobs go to
        ``<url>/encode`` (no trailing ``/`` in ``url``: the real one does not strip it either)."""
        if tier not in TIERS:
            raise EmbedAdminError(400, f"tier must be one of: {', '.join(TIERS)}")
        with self._cond:
            if name in self._encoders:
                raise EmbedAdminError(409, f"Encoder '{name}' already exists")
            encoder = Encoder(name=name, url=url, api_key=api_key, enabled=enabled,
                              tier=tier, max_file_size=max_file_size)  # fmt: skip
            self._encoders[name] = encoder
            self._changed()
            return copy.deepcopy(encoder)

    # --- admin actions ------------------------------------------------------------------------

    def redispatch(self, owner: str, permlink: str) -> dict[str, Any]:
        """``POST /admin/jobs/<owner>/<permlink>/redispatch``: the answer, or EmbedAdminError."""
        status, body = self._redispatch(owner, permlink)
        if status != 200:
            raise EmbedAdminError(status, str(body["error"]))
        return body

    def remove_encoder(self, name_or_did: str) -> None:
        """``DELETE /admin/encoders/<name>`` (a community encoder may be named by its DID)."""
        with self._cond:
            found = self._find_encoder(name_or_did)
            if found is None:
                raise EmbedAdminError(404, "Encoder not found")
            del self._encoders[found.name]
            self._changed()

    def set_encoder(
        self,
        name_or_did: str,
        *,
        enabled: bool | None = None,
        banned: bool | None = None,
        url: str | None = None,
        api_key: str | None = None,
        tier: str | None = None,
        max_file_size: int | object | None = MISSING,
    ) -> dict[str, Any]:
        """``PATCH /admin/encoders/<name>``; returns the updates made."""
        updates: dict[str, Any] = {}
        if url is not None:
            updates["url"] = url
        if api_key is not None:
            updates["api_key"] = api_key
        if enabled is not None:
            updates["enabled"] = enabled
        if tier is not None:
            if tier not in TIERS:
                raise EmbedAdminError(400, f"tier must be one of: {', '.join(TIERS)}")
            updates["tier"] = tier
        if max_file_size is not MISSING:
            updates["max_file_size"] = max_file_size
        if banned is not None:
            updates["banned"] = banned
        with self._cond:
            found = self._find_encoder(name_or_did)
            if found is None:
                raise EmbedAdminError(404, "Encoder not found")
            if not updates:
                raise EmbedAdminError(400, "No valid fields to update")
            for key, value in updates.items():
                setattr(found, key, value)
            found.updated_at = time.time()
            self._changed()
        return updates

    def _redispatch(self, owner: str, permlink: str) -> tuple[int, dict[str, Any]]:
        with self._cond:
            job = self._jobs.get((owner, permlink))
            if job is None:
                return 404, JOB_NOT_FOUND
            video = self._videos.get(permlink)
            if video is None:
                return 404, {"error": "Video not found"}
            if not video.input_cid:
                return 400, {"error": "Video has no input_cid — nothing to dispatch"}
            previous = job.status
            self._reset_job(job)
            self._update_video(permlink, "processing", encoding_progress=0)
            self._changed()
        return 200, {
            "success": True,
            "message": "Job reset to pending. Dispatcher will pick it up on the next cycle.",
            "job": {"owner": owner, "permlink": permlink, "previousStatus": previous},
        }


__all__ = ["AdminActions"]
