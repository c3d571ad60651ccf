"""``speak-encoder doctor`` (is this node able to work?) and ``speak-encoder healthcheck``.

``doctor`` prints one table row per check (:mod:`speak_encoder.doctor`), or ``--json``; the exit
code is 1 when any check failed (warnings do not fail). ``healthcheck`` asks the running node's
operator server for ``/health`` (the container's HEALTHCHECK): exit 0 when it answers 200.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, Final

from speak_encoder.config import Settings

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
#: Seconds ``healthcheck`` waits for ``/health``.
HEALTHCHECK_TIMEOUT_S: Final = 4.0
#: Where ``healthcheck`` looks when the settings have no DASHBOARD_HOST/DASHBOARD_PORT yet.
DEFAULT_HEALTH_HOST: Final = "127.0.0.1"
DEFAULT_HEALTH_PORT: Final = 3001

_STYLE: Final = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}
_MARK: Final = {"ok": "✔ ok", "warn": "⚠ warn", "fail": "✖ FAIL", "skip": "– skip"}


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from speak_encoder.doctor import DEFAULT_NETWORK_TIMEOUT_S, failed, run_checks

    checks = asyncio.run(
        run_checks(
            settings,
            timeout=args.timeout or DEFAULT_NETWORK_TIMEOUT_S,
            hardware=not args.no_hardware,
        )
    )
    bad = failed(checks)
    if args.json:
        print(json.dumps({"ok": not bad, "checks": [c.to_json() for c in checks]}))
        return EXIT_FAILED if bad else EXIT_OK
    from rich.console import Console  # (here: building the parser must not load rich)
    from rich.table import Table
    from rich.text import Text

    table = Table(title="speak-encoder doctor", show_lines=False, expand=False)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for check in checks:  # Text, not markup: details hold URLs and messages from outside
        table.add_row(
            Text(check.name),
            Text(_MARK[check.status], style=_STYLE[check.status]),
            Text(check.detail),
        )
    console = Console(soft_wrap=False)
    console.print(table)
    counts = {s: sum(c.status == s for c in checks) for s in _MARK}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    console.print(
        Text(f"{'FAILED' if bad else 'OK'}: {summary}", style=_STYLE["fail" if bad else "ok"])
    )
    return EXIT_FAILED if bad else EXIT_OK


def health_url(settings: Settings) -> str:
    host = str(getattr(settings, "dashboard_host", None) or DEFAULT_HEALTH_HOST)
    port = int(getattr(settings, "dashboard_port", None) or DEFAULT_HEALTH_PORT)
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 (compared, not bound)
        host = DEFAULT_HEALTH_HOST
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/health"


def cmd_healthcheck(args: argparse.Namespace, settings: Settings) -> int:
    import httpx

    url = args.url or health_url(settings)
    try:
        response = httpx.get(url, timeout=HEALTHCHECK_TIMEOUT_S, follow_redirects=False)
    except httpx.HTTPError as exc:
        print(f"unhealthy: {url}: {type(exc).__name__}", file=sys.stderr)
        return EXIT_FAILED
    if response.status_code != 200:
        print(f"unhealthy: {url}: HTTP {response.status_code}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def add_doctor_commands(sub: Any) -> None:
    doctor = sub.add_parser(
        "doctor",
        help="check ffmpeg, IPFS, targets, gateways, identity, disk and settings",
        description="Check everything the node depends on and print one row per check. "
        "Exit code 1 when a check failed (warnings do not fail).",
    )
    doctor.add_argument("--json", action="store_true", help="one JSON object")
    doctor.add_argument(
        "--timeout", type=float, default=None, help="seconds per network check (default 5)"
    )
    doctor.add_argument(
        "--no-hardware", action="store_true", help="skip hardware encoder detection"
    )
    doctor.set_defaults(func=cmd_doctor)

    health = sub.add_parser(
        "healthcheck",
        help="exit 0 when the running node's /health answers (container HEALTHCHECK)",
    )
    health.add_argument("--url", help="default http://DASHBOARD_HOST:DASHBOARD_PORT/health")
    health.set_defaults(func=cmd_healthcheck)


__all__ = [
    "DEFAULT_HEALTH_HOST",
    "DEFAULT_HEALTH_PORT",
    "EXIT_FAILED",
    "EXIT_OK",
    "HEALTHCHECK_TIMEOUT_S",
    "add_doctor_commands",
    "health_url",
]
