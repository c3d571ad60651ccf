"""The reference embed server: :class:`EmbedServer`, composed of its parts (records, webhooks,
community gateway, admin, dispatcher), with its route table and the plain GET routes.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from speak_encoder.sources.gateway_protocol import ROUTE_PREFIX
from speak_encoder.testing.embed_server.admin import AdminActions
from speak_encoder.testing.embed_server.community import CommunityRoutes
from speak_encoder.testing.embed_server.dispatch import Dispatcher
from speak_encoder.testing.embed_server.protocol import EXPRESS_METHODS, Outcome
from speak_encoder.testing.embed_server.webhooks import WebhookRoutes
from speak_encoder.testing.express import express_page


class EmbedServer(WebhookRoutes, CommunityRoutes, AdminActions, Dispatcher):
    """The reference embed server (see the package docstring). Use as a context manager."""

    thread_name = "reference-embed-server"

    def _routes(self) -> list[BaseRoute]:
        prefix = ROUTE_PREFIX
        return [
            Route("/webhook", self._webhook_route, methods=["POST"]),
            Route("/webhook/progress", self._progress_route, methods=["POST"]),
            Route(prefix + "updateNode", self._update_node_route, methods=["POST"]),
            Route(prefix + "myJob", self._my_job_route, methods=["POST"]),
            Route(prefix + "heartbeat", self._heartbeat_route, methods=["POST"]),
            Route("/video/{permlink}", self._video_route, methods=["GET"]),
            Route("/health", self._health_route, methods=["GET"]),
            Route("/", self._root_route, methods=["GET"]),
            Route("/_reference/videos", self._reference_videos, methods=["GET", "POST"]),
            Route(
                "/_reference/jobs/{owner}/{permlink}/redispatch",
                self._reference_redispatch,
                methods=["POST"],
            ),
            Route("/{path:path}", self._unknown_route, methods=[*EXPRESS_METHODS]),
        ]

    # GET routes and Express's own answers
    async def _video_route(self, request: Request) -> Response:
        permlink = str(request.path_params["permlink"])

        def answer(body: Any, headers: dict[str, str]) -> Outcome:
            with self._cond:
                video = self._videos.get(permlink)
                if video is None:
                    return Outcome(404, {"error": "Video not found"})
                return Outcome(200, video.document())

        return await self._serve(request, "video", answer)

    async def _health_route(self, request: Request) -> Response:
        body = {"status": "ok", "service": "3speak-video-upload", "activeUploads": 0,
                "freeDiskPct": None}  # fmt: skip
        return await self._serve(request, "health", lambda b, h: Outcome(200, body))

    async def _root_route(self, request: Request) -> Response:
        return RedirectResponse("/demo.html", status_code=302)

    async def _unknown_route(self, request: Request) -> Response:
        return express_page(404, f"Cannot {request.method} {request.url.path}")

    # Non-spec helpers (this model only)
    async def _reference_videos(self, request: Request) -> Response:
        def handle(body: Any, headers: dict[str, str]) -> Outcome:
            if request.method == "GET":
                return Outcome(200, [v.document() for v in self.videos()])
            fields = body if isinstance(body, dict) else {}
            try:
                job = self.add_video(
                    str(fields["owner"]), str(fields["permlink"]), str(fields["input_cid"]),
                    short=bool(fields.get("short", False)),
                    premium=bool(fields.get("premium", False)),
                    frontend_app=fields.get("frontend_app"),
                    original_filename=fields.get("originalFilename"),
                    size=fields.get("size"),
                )  # fmt: skip
            except KeyError:
                return Outcome(400, {"error": "owner, permlink and input_cid are required"})
            except ValueError as exc:
                return Outcome(409, {"error": str(exc)})
            return Outcome(200, {"success": True, "owner": job.owner, "permlink": job.permlink,
                                  "status": job.status})  # fmt: skip

        return await self._serve(request, "reference/videos", handle)

    async def _reference_redispatch(self, request: Request) -> Response:
        owner, permlink = str(request.path_params["owner"]), str(request.path_params["permlink"])
        return await self._serve(
            request, "admin/redispatch", lambda b, h: Outcome(*self._redispatch(owner, permlink))
        )


__all__ = ["EmbedServer"]
