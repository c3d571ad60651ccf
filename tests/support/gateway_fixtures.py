"""3Speak gateway fixtures: the reference gateway, node keys, and a node process that polls it.

``reference_gateway``        a started :class:`ReferenceGateway` (stopped after the test)
``node_key``                 a fresh node identity and its ``ENCODER_PRIVATE_KEY`` value
``make_gateway_node``        ``make_gateway_node(**env)`` → a :class:`GatewayNodeProcess`
``gateway_settings``         ``gateway_settings(**overrides)`` → Settings on a private data dir

Until ``speak-encoder run`` starts the gateway sources itself, a node process is this module
run as ``python -m tests.support.gateway_fixtures``: the real :class:`Service` of `run`, plus the
gateway sources wired exactly as the service will wire them (GATEWAY_ENABLED /
EMBED_GATEWAY_ENABLED are read here and hidden from the service, so nothing starts twice).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from speak_encoder.config import Settings, load_settings
from speak_encoder.node.identity import NodeIdentity
from speak_encoder.testing.gateway import ReferenceGateway
from tests.support.node_fixtures import NodeProcess, node_env

REPO_ROOT = Path(__file__).resolve().parents[2]
HARNESS = [sys.executable, "-m", "tests.support.gateway_fixtures"]


@dataclass(frozen=True)
class NodeKey:
    identity: NodeIdentity
    env_value: str  # base64 seed, as ENCODER_PRIVATE_KEY

    @property
    def did(self) -> str:
        return self.identity.did


def new_node_key() -> NodeKey:
    seed = secrets.token_bytes(32)
    text = base64.b64encode(seed).decode()
    return NodeKey(NodeIdentity.from_base64(text), text)


@pytest.fixture
def node_key() -> NodeKey:
    return new_node_key()


@pytest.fixture
def reference_gateway() -> Iterator[ReferenceGateway]:
    with ReferenceGateway() as gateway:
        yield gateway


@pytest.fixture
def gateway_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "temp_dir": tmp_path / "data" / "work",
            "node_name": "gw-test-node",
            "hive_username": "tester",
            "gateway_poll_interval": 0.2,
            "gateway_timeout": 2.0,
            "publish_targets": "",
            "ipfs_api_addr": "",
            "ipfs_gateways": "",
            "allow_private_urls": True,  # job sources on 127.0.0.1 (no DNS in tests)
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


class GatewayNodeProcess(NodeProcess):
    """A node process with the gateway sources wired (see the module docstring)."""

    def start(self, **extra_env: str) -> GatewayNodeProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**self.env, **extra_env}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            HARNESS, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
        )  # fmt: skip
        log.close()
        self.starts += 1
        return self


@pytest.fixture
def make_gateway_node(tmp_path: Path) -> Iterator[Callable[..., GatewayNodeProcess]]:
    nodes: list[GatewayNodeProcess] = []

    def make(name: str = "node", **extra: str) -> GatewayNodeProcess:
        data_dir = tmp_path / name
        env = node_env(data_dir, GATEWAY_POLL_INTERVAL="0.5", GATEWAY_TIMEOUT="5", **extra)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        node = GatewayNodeProcess(data_dir, env)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()


# --- the node harness (python -m tests.support.gateway_fixtures) ----------------------------


async def _serve(settings: Settings) -> int:
    from speak_encoder.node.identity import load_identity
    from speak_encoder.node.service import Service
    from speak_encoder.sources.embed import EmbedSource
    from speak_encoder.sources.gateway import GatewaySource
    from speak_encoder.sources.webhooks import OutboxDeliverer, WebhookHooks

    hidden = settings.model_copy(update={"gateway_enabled": False, "embed_gateway_enabled": False})
    service = Service(hidden)
    identity = load_identity(settings)
    tasks: list[asyncio.Task[None]] = []
    if settings.gateway_enabled:
        gateway = GatewaySource(settings, service.store, service.scheduler, identity)
        tasks.append(asyncio.create_task(gateway.run(service.stop), name="gateway"))
    if settings.embed_gateway_enabled:
        deliverer = OutboxDeliverer(settings, service.store)
        webhooks = WebhookHooks(settings, service.store, on_enqueue=deliverer.notify)
        embed = EmbedSource(
            settings, service.store, service.scheduler, identity,
            webhooks=webhooks, deliverer=deliverer,
        )  # fmt: skip
        tasks.append(asyncio.create_task(deliverer.run(service.stop), name="webhooks"))
        tasks.append(asyncio.create_task(embed.run(service.stop), name="embed"))
    try:
        return await service.serve()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return asyncio.run(_serve(load_settings()))


if __name__ == "__main__":
    sys.exit(main())
