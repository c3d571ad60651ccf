"""The embed server's two checks of who calls: the webhooks' ``X-API-Key`` (the webhook key or
the job's current callback token) and the gateway routes' JWS, whose ``kid`` names the
signer's DID (:func:`~speak_encoder.node.identity.verify_jws`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from speak_encoder.node.identity import InvalidJws, verify_jws
from speak_encoder.testing.embed_server.protocol import BAD_JWS, Answer, Outcome
from speak_encoder.testing.embed_server.records import EmbedJob


def authorized(webhook_key: str, api_key: str | None, job: EmbedJob | None) -> bool:
    """The webhooks' check: ``api_key`` is the server's webhook key or ``job``'s current
    callback token (a token of an earlier claim is refused)."""
    if api_key == webhook_key:
        return True
    return (
        bool(api_key)
        and job is not None
        and bool(job.callback_token)
        and (job.callback_token == api_key)
    )


def jws_handler(
    handler: Callable[[str, dict[str, Any]], Answer],
) -> Callable[[Any, dict[str, str]], Outcome]:
    """``unwrapJWS(req.body.jws)`` then ``handler(did, payload)``: any failure is 401
    ``Invalid JWS signature``."""

    def run(body: Any, headers: dict[str, str]) -> Outcome:
        jws = body.get("jws") if isinstance(body, dict) else None
        try:
            if not isinstance(jws, dict):
                raise InvalidJws("no JWS", "malformed")
            payload = verify_jws(jws)
            did = kid_did(jws)
        except (InvalidJws, KeyError, IndexError, TypeError, ValueError):
            return Outcome(401, BAD_JWS)
        answer = handler(did, payload)
        status, answer_body = answer if isinstance(answer, tuple) else (200, answer)
        return Outcome(status, answer_body, did=did, payload=payload)

    return run


def kid_did(jws: dict[str, Any]) -> str:
    """``data.kid.split('#')[0]``: the signer's DID as the real server stores it."""
    protected = str(jws["signatures"][0]["protected"])
    header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
    return str(header["kid"]).split("#")[0]


__all__ = ["authorized", "jws_handler", "kid_did"]
