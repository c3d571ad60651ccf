"""The operator token of the dashboard's actions, with a throttle on wrong guesses.

An action needs ``Authorization: Bearer <DASHBOARD_TOKEN>`` (compared in constant time).
Without a configured token every action is refused (403) and the page is read-only. A client
address with too many wrong tokens in a minute gets 429
(:class:`~speak_encoder.asgi_server.AuthThrottle`).
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from speak_encoder.asgi_server import AuthThrottle, client_of
from speak_encoder.config import Settings


def check_token(settings: Settings, header: str | None) -> Response | None:
    """None when ``header`` carries the operator token, else the refusal to send."""
    token = settings.dashboard_token.get_secret_value() if settings.dashboard_token else ""
    if not token:
        return JSONResponse(
            {"error": "read-only dashboard: no DASHBOARD_TOKEN is configured on this node"},
            status_code=403,
        )
    given = ""
    if header and header[:7].lower() == "bearer ":
        given = header[7:].strip()
    if not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
        return JSONResponse(
            {"error": "missing or wrong operator token"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="speak-encoder"'},
        )
    return None


class OperatorAuth:
    """:func:`check_token` per request, behind a throttle of wrong tokens per client address."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.throttle = AuthThrottle()

    def refusal(self, request: Request) -> Response | None:
        """None when the request carries the operator token, else the refusal to send."""
        client = client_of(request.scope)
        wait = self.throttle.retry_after(client)
        if wait is not None:
            return JSONResponse(
                {"error": f"too many wrong tokens from this address: try again in {wait:.0f} s"},
                status_code=429,
                headers={"Retry-After": str(round(wait))},
            )
        header = request.headers.get("authorization")
        refused = check_token(self.settings, header)
        if refused is not None and refused.status_code == 401 and header:
            self.throttle.failed(client)  # a wrong token (a missing one is not a guess)
        return refused

    @property
    def can_act(self) -> bool:
        """Whether a token is configured at all (else the page is read-only)."""
        token = self.settings.dashboard_token
        return token is not None and bool(token.get_secret_value())


__all__ = ["OperatorAuth", "check_token"]
