"""3Speak gateway fixtures: the reference servers, node keys, and a node process that polls them.

``reference_gateway``        a started :class:`ReferenceGateway` (legacy, stopped after the test)
``embed_server``             a started :class:`EmbedServer` (the embed server's model)
``node_key``                 a fresh node identity and its ``ENCODER_PRIVATE_KEY`` value
``make_gateway_node``        ``make_gateway_node(**env)`` → a `speak-encoder run` process
                             (:class:`GatewayNodeProcess`) with a fast gateway poll interval
``gateway_settings``         ``gateway_settings(**overrides)`` → Settings on a private data dir
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from speak_encoder.config import Settings
from speak_encoder.node.identity import NodeIdentity
from speak_encoder.testing.embed_server import EmbedServer
from speak_encoder.testing.gateway import ReferenceGateway
from tests.support.node_fixtures import NodeProcess, node_env


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
def embed_server() -> Iterator[EmbedServer]:
    with EmbedServer() as server:
        yield server


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
    """A real `speak-encoder run` process (sources enabled through its environment)."""


@pytest.fixture
def make_gateway_node(tmp_path: Path) -> Iterator[Callable[..., GatewayNodeProcess]]:
    nodes: list[GatewayNodeProcess] = []

    def make(name: str = "node", **extra: str) -> GatewayNodeProcess:
        data_dir = tmp_path / name
        env = node_env(data_dir, GATEWAY_POLL_INTERVAL="0.5", GATEWAY_TIMEOUT="5", **extra)
        node = GatewayNodeProcess(data_dir, env)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()
