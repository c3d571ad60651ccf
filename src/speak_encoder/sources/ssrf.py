"""The SSRF guard for the job sources (webhooks, gateway and embed claims).

The guard itself is :mod:`speak_encoder.urlguard` (a bottom-layer module: the fetch stage checks
and pins every hop of a source download with it too); this module keeps the names the sources
import.
"""

from __future__ import annotations

from speak_encoder.errors import UnsafeUrl
from speak_encoder.urlguard import (
    MAX_URL_LENGTH,
    PinnedUrl,
    Resolver,
    UrlGuard,
    address_problem,
    check_public_url,
    system_resolve,
)

__all__ = [
    "MAX_URL_LENGTH",
    "PinnedUrl",
    "Resolver",
    "UnsafeUrl",
    "UrlGuard",
    "address_problem",
    "check_public_url",
    "system_resolve",
]
