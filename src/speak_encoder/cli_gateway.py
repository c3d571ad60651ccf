"""``speak-encoder dev-gateway``: run the reference 3Speak servers locally.

Two servers, each on its own port (both printed at start): the legacy encoder gateway
(:class:`~speak_encoder.testing.gateway.ReferenceGateway`, docs/protocols.md §2) and the embed
server (:class:`~speak_encoder.testing.embed_server.EmbedServer`, §3, modelled from the real
one). Try a node without the real network::

    speak-encoder dev-gateway --job https://example.org/clip.mp4 --embed-job Qm… &
    GATEWAY_ENABLED=true GATEWAY_URL=http://127.0.0.1:8090 \\
    EMBED_GATEWAY_ENABLED=true EMBED_GATEWAY_URL=http://127.0.0.1:8091 speak-encoder run

More jobs while it runs: ``curl -d '{"uri": "ipfs://Qm…"}' http://127.0.0.1:8090/_reference/jobs``
(legacy) or ``curl -H 'Content-Type: application/json' -d '{"owner": "me", "permlink": "v2",
"input_cid": "Qm…"}' http://127.0.0.1:8091/_reference/videos`` (embed).
"""

from __future__ import annotations

import argparse
import contextlib
import threading
from typing import Any, Final

from speak_encoder.config import Settings

#: Default ports of the two servers.
DEV_GATEWAY_PORT: Final = 8090
DEV_EMBED_PORT: Final = 8091
#: The owner of the videos ``--embed-job`` adds.
DEV_OWNER: Final = "dev"


def cmd_dev_gateway(args: argparse.Namespace, settings: Settings) -> int:
    from speak_encoder.testing.embed_server import DISPATCH_INTERVAL_S, IPFS_GATEWAY, EmbedServer
    from speak_encoder.testing.gateway import ReferenceGateway

    gateway = ReferenceGateway(
        host=args.host,
        port=args.port,
        reassign_after=args.reassign_after,
        needs_update=args.needs_update,
    )
    embed = EmbedServer(
        host=args.host,
        port=args.embed_port,
        ipfs_gateway=args.ipfs_gateway or IPFS_GATEWAY,
        dispatch_interval=DISPATCH_INTERVAL_S if args.encoder_url else None,
    )
    if args.encoder_url:
        embed.add_managed_encoder("dev-encoder", args.encoder_url, args.encoder_key or "")
    for source in args.job or []:
        job = gateway.add_job(source)
        print(f"queued legacy job {job['id']}: {source}")
    for number, cid in enumerate(args.embed_job or [], start=1):
        embed.add_video(DEV_OWNER, f"video-{number}", cid)
        print(f"queued embed job {DEV_OWNER}/video-{number}: {cid}")
    with gateway, embed:
        print(f"reference gateway (legacy, §2) on {gateway.url}")
        print(f"  a node uses it with GATEWAY_ENABLED=true GATEWAY_URL={gateway.url}")
        print(f'  add a job: curl -d \'{{"uri": "SOURCE"}}\' {gateway.url}/_reference/jobs')
        print(f"reference embed server (§3) on {embed.url}")
        print(f"  a node uses it with EMBED_GATEWAY_ENABLED=true EMBED_GATEWAY_URL={embed.url}")
        print(f"  add a video: curl -H 'Content-Type: application/json' -d '{{\"owner\": "
              f"\"me\", \"permlink\": \"p\", \"input_cid\": \"CID\"}}' "
              f"{embed.url}/_reference/videos")  # fmt: skip
        print("Ctrl-C stops both.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


def add_gateway_commands(sub: Any) -> None:
    dev = sub.add_parser(
        "dev-gateway",
        help="run the reference 3Speak servers (for trying a node locally)",
        description="Serve the 3Speak legacy gateway's routes on HOST:PORT and a model of the "
        "embed server on HOST:EMBED_PORT, with in-memory jobs: signatures verified, jobs "
        "assigned, claimed and re-assigned, every call kept in memory only. Not for production.",
    )
    dev.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    dev.add_argument(
        "--port", type=int, default=DEV_GATEWAY_PORT,
        help=f"port of the legacy gateway (default {DEV_GATEWAY_PORT}; 0: any free port)",
    )  # fmt: skip
    dev.add_argument(
        "--embed-port", type=int, default=DEV_EMBED_PORT,
        help=f"port of the embed server (default {DEV_EMBED_PORT}; 0: any free port)",
    )  # fmt: skip
    dev.add_argument(
        "--reassign-after",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="re-assign a legacy job after this long without a ping (default 300)",
    )
    dev.add_argument(
        "--job",
        action="append",
        metavar="SOURCE",
        help="queue a legacy job (repeatable): URL or CID",
    )
    dev.add_argument(
        "--embed-job", action="append", metavar="CID",
        help=f"add an embed video {DEV_OWNER}/video-N with this input CID (repeatable)",
    )  # fmt: skip
    dev.add_argument(
        "--ipfs-gateway", metavar="URL",
        help="prefix of the input_cid URLs the embed server hands out "
        "(default https://ipfs.3speak.tv/ipfs, as the real one)",
    )  # fmt: skip
    dev.add_argument(
        "--encoder-url", metavar="URL",
        help="a managed encoder's Direct API: the embed server pushes jobs to URL/encode "
        "every 30 s (managed mode)",
    )  # fmt: skip
    dev.add_argument("--encoder-key", metavar="KEY", help="its DIRECT_API_KEY")
    dev.add_argument(
        "--needs-update", action="store_true",
        help="answer the legacy gateway's heartbeats with needs_update=true "
        "(the embed server never sends it)",
    )  # fmt: skip
    dev.set_defaults(func=cmd_dev_gateway)


__all__ = ["DEV_EMBED_PORT", "DEV_GATEWAY_PORT", "DEV_OWNER", "add_gateway_commands"]
