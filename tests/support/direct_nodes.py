"""Nodes that take Direct API jobs in end-to-end tests: start one, submit, add a source to IPFS."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from speak_encoder.testing.ipfs_node import JsIpfsNode, free_port
from tests.support.node_fixtures import NodeProcess

MakeNode = Callable[..., NodeProcess]
API_KEY = "test-direct-api-key-0123456789"
SECRET = "webhook-secret-for-tests"


def ipfs_add(node: JsIpfsNode, path: Path) -> str:
    with path.open("rb") as handle:
        response = httpx.post(
            f"{node.api_url}/api/v0/add",
            params={"cid-version": "0", "pin": "true"},
            files={"file": (path.name, handle, "application/octet-stream")},
            timeout=60,
        )
    response.raise_for_status()
    return str(json.loads(response.text.strip().splitlines()[-1])["Hash"])


def direct_node(
    make_node: MakeNode, ipfs_node: JsIpfsNode, *, name: str = "node", **extra: str
) -> tuple[NodeProcess, str]:
    """A node with the Direct API on a free port, webhooks allowed to 127.0.0.1, publishing to
    ``ipfs_node``; returns it (not started) and the API's base URL."""
    port = free_port()
    env = {
        "DIRECT_API_ENABLED": "true",
        "DIRECT_API_PORT": str(port),
        "DIRECT_API_KEY": API_KEY,
        "WEBHOOK_SECRET": SECRET,
        "ALLOW_PRIVATE_URLS": "true",  # the receiver is on 127.0.0.1
        "IPFS_API_ADDR": ipfs_node.api_url,
        "PUBLISH_TARGETS": "local",
        "WEBHOOK_RETRY_BASE": "0.2",
        "WEBHOOK_RETRY_MAX": "1",
        **extra,
    }
    node = make_node(name, **env)
    return node, f"http://127.0.0.1:{port}"


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the Direct API never answered")


def submit(api: str, cid: str, hook: str, **fields: object) -> dict[str, object]:
    body = {"owner": "alice", "permlink": "my-video", "input_cid": cid, "short": False,
            "webhook_url": hook, "api_key": "hook-key", "originalFilename": "clip.mp4",
            "frontend_app": "tests", **fields}  # fmt: skip
    response = httpx.post(f"{api}/encode", json=body, headers={"X-API-Key": API_KEY}, timeout=10)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result
