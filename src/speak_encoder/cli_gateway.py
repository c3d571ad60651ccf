"""``speak-encoder dev-gateway``: run the reference 3Speak gateway locally.

Try a node without the real network::

    speak-encoder dev-gateway --job https://example.org/clip.mp4 &
    GATEWAY_ENABLED=true GATEWAY_URL=http://127.0.0.1:8090 speak-encoder run

More jobs while it runs: ``curl -d '{"uri": "ipfs://Qm…"}' http://127.0.0.1:8090/_reference/jobs``.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from speak_encoder.config import Settings


def cmd_dev_gateway(args: argparse.Namespace, settings: Settings) -> int:
    from speak_encoder.testing.gateway import ReferenceGateway

    gateway = ReferenceGateway(
        host=args.host,
        port=args.port,
        reassign_after=args.reassign_after,
        needs_update=args.needs_update,
    )
    for source in args.job or []:
        job = gateway.add_job(source)
        print(f"queued job {job['id']}: {source}")
    print(f"reference gateway on http://{args.host}:{args.port}  (Ctrl-C stops it)")
    print(f"  a node uses it with GATEWAY_ENABLED=true GATEWAY_URL=http://{args.host}:{args.port}")
    print(f"  add a job: curl -d '{{\"uri\": \"SOURCE\"}}' http://{args.host}:{args.port}"
          "/_reference/jobs")  # fmt: skip
    with contextlib.suppress(KeyboardInterrupt):
        gateway.serve_forever()
    return 0


def add_gateway_commands(sub: Any) -> None:
    dev = sub.add_parser(
        "dev-gateway",
        help="run the reference 3Speak gateway (for trying a node locally)",
        description="Serve both 3Speak gateways' routes (legacy and embed) on HOST:PORT with an "
        "in-memory job queue: signatures verified, jobs assigned and re-assigned, every call "
        "logged nowhere but kept in memory. Not for production.",
    )
    dev.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=8090, help="port (default 8090)")
    dev.add_argument(
        "--reassign-after",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="re-assign a job after this long without a ping (default 300)",
    )
    dev.add_argument(
        "--job", action="append", metavar="SOURCE", help="queue a job (repeatable): URL or CID"
    )
    dev.add_argument(
        "--needs-update", action="store_true", help="answer heartbeats with needs_update=true"
    )
    dev.set_defaults(func=cmd_dev_gateway)
