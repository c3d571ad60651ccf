"""Publishing to every target (real node + faithful fakes of the remote services), verified;
failures queued and never lost, across a node restart and a re-opened queue."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from speak_encoder.cli_storage import add_storage_commands
from speak_encoder.config import Settings, load_settings
from speak_encoder.errors import CidMismatch, ConfigError, PublishIncomplete
from speak_encoder.node.store import JobStore
from speak_encoder.node.store.pins import StorePinQueue
from speak_encoder.storage.kubo import KuboClient
from speak_encoder.storage.local_store import keep_folder, stored_path
from speak_encoder.storage.pins import DONE, PENDING
from speak_encoder.storage.targets import publish_folder, retry_pending
from speak_encoder.storage.unixfs import import_folder
from speak_encoder.testing.ipfs_node import JsIpfsNode, free_port
from speak_encoder.testing.ipfs_proxy import KuboFaultProxy
from speak_encoder.testing.pin_services import (
    FakeIpfsCluster,
    FakePinningService,
    FakeTrafficDirector,
)
from tests.support.ipfs_fixtures import write_random_file

TOKEN = "test-token"


def make_output(root: Path) -> tuple[Path, str]:
    seed = secrets.randbits(32)
    write_random_file(root / "480p" / "480p_0.ts", 400_000, seed)
    (root / "480p" / "index.m3u8").write_text(f"#EXTM3U\n#{seed}\n480p_0.ts\n")
    (root / "manifest.m3u8").write_text("#EXTM3U\n480p/index.m3u8\n")
    return root, str(import_folder(root))


def settings_for(tmp_path: Path, **values: Any) -> Settings:
    base: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "ipfs_connect_timeout": 2,
        "ipfs_processing_timeout": 20,
        "pin_retry_base": 1,
    }
    base.update(values)
    return load_settings(**base)


@contextlib.contextmanager
def pin_queue(settings: Settings) -> Iterator[StorePinQueue]:
    """The node's pin queue, in the job store of ``settings`` (opened afresh each time, as a
    new process would)."""
    store = JobStore.open(settings)
    try:
        yield store.pin_queue(settings)
    finally:
        store.close()


def publish(folder: Path, settings: Settings, cid: str, **kwargs: Any) -> Any:
    with pin_queue(settings) as queue:
        return asyncio.run(
            publish_folder(folder, settings, expected_cid=cid, queue=queue, **kwargs)
        )


def retry(settings: Settings) -> Any:
    with pin_queue(settings) as queue:
        return asyncio.run(retry_pending(settings, queue, force=True))


def pinned_on(node: JsIpfsNode, cid: str) -> bool:
    async def check() -> bool:
        async with KuboClient(node.api_url) as client:
            return await client.pin_ls(cid, timeout=5)

    return asyncio.run(check())


def test_publish_to_every_target_is_verified(ipfs_node: JsIpfsNode, tmp_path: Path) -> None:
    folder, cid = make_output(tmp_path / "out")
    progress: list[tuple[str, int, int]] = []
    with (
        FakeTrafficDirector(ipfs_node.api_url) as director,
        FakeIpfsCluster(ipfs_node.api_url, token="admin:secret") as cluster,
        FakePinningService(ipfs_node.api_url, token=TOKEN) as service,
    ):
        settings = settings_for(
            tmp_path,
            ipfs_api_addr=ipfs_node.api_multiaddr,
            traffic_director_url=director.url,
            threespeak_ipfs_endpoint=ipfs_node.api_url,
            ipfs_cluster_url=cluster.url,
            ipfs_cluster_token="admin:secret",
            pinning_service_url=service.url,
            pinning_service_token=TOKEN,
            publish_targets="local,hotnode,supernode,cluster,pinning_service",
            publish_required="all",
        )
        result = publish(folder, settings, cid, on_progress=lambda *a: progress.append(a))
        assert result.ok, result.as_dict()
        assert [o.name for o in result.outcomes if o.ok] == [
            "local", "hotnode", "supernode", "cluster", "pinning_service",
        ]  # fmt: skip
        assert ("POST", f"/pins/{cid}") in cluster.requests
        assert ("GET", f"/pins/{cid}") in cluster.requests
        assert ("POST", "/pins") in service.requests
        assert any(path.startswith("/pins/") for _, path in service.requests)
        assert director.requests == [("GET", "/")]
    assert {name for name, _, _ in progress} == {"local", "hotnode", "supernode"}
    assert pinned_on(ipfs_node, cid)
    with pin_queue(settings) as queue:
        assert queue.entries(None) == []


def test_node_down_pin_is_queued_and_pinned_after_restart(tmp_path: Path) -> None:
    folder, cid = make_output(tmp_path / "out")
    with JsIpfsNode() as node:
        node.stop()  # the node is down
        settings = settings_for(tmp_path, ipfs_api_addr=node.api_url, publish_targets="local")
        with pytest.raises(PublishIncomplete, match="queued for retry") as caught:
            publish(folder, settings, cid)
        assert not caught.value.result.ok
        assert caught.value.result.outcomes[0].error_kind == "IpfsUnavailable"

        # The encoder restarts: a fresh process re-opens the queue from disk.
        with pin_queue(settings) as queue:
            [entry] = queue.entries()
            assert (entry.cid, entry.target, entry.status) == (cid, "local", PENDING)
            assert "cannot connect" in (entry.last_error or "")

        still_down = retry(settings)
        assert len(still_down.failed) == 1
        assert not still_down.done

        node.start()  # the node is back
        summary = retry(settings)
        assert [p.cid for p in summary.done] == [cid]
        assert pinned_on(node, cid)
        with pin_queue(settings) as queue:
            assert [e.status for e in queue.entries(None)] == [DONE]


def test_wrong_cid_from_the_node_fails_the_publish(ipfs_node: JsIpfsNode, tmp_path: Path) -> None:
    folder, cid = make_output(tmp_path / "out")
    with KuboFaultProxy(ipfs_node.api_url, "wrong-root") as proxy:
        settings = settings_for(tmp_path, ipfs_api_addr=proxy.url, publish_targets="local")
        with pytest.raises(CidMismatch, match=cid):
            publish(folder, settings, cid)


def test_any_remote_policy_queues_the_failed_remote(ipfs_node: JsIpfsNode, tmp_path: Path) -> None:
    folder, cid = make_output(tmp_path / "out")
    dead = f"http://127.0.0.1:{free_port()}"
    with FakePinningService(ipfs_node.api_url, token=TOKEN) as service:
        settings = settings_for(
            tmp_path,
            ipfs_api_addr=ipfs_node.api_url,
            ipfs_cluster_url=dead,
            pinning_service_url=service.url,
            pinning_service_token=TOKEN,
            publish_targets="local,cluster,pinning_service",
            publish_required="any-remote",
        )
        result = publish(folder, settings, cid)
    assert result.ok
    assert [o.name for o in result.pending] == ["cluster"]
    with pin_queue(settings) as queue:
        assert [(e.target, e.status) for e in queue.entries()] == [("cluster", PENDING)]

    # `pins` CLI: list shows the queued one, retry keeps it (cluster still down) → exit 1.
    parser = argparse.ArgumentParser()
    add_storage_commands(parser.add_subparsers())
    args = parser.parse_args(["pins", "list", "--json"])
    assert args.func(args, settings) == 0
    args = parser.parse_args(["pins", "retry", "--force"])
    assert args.func(args, settings) == 1


def test_pinning_service_rejects_a_bad_token(ipfs_node: JsIpfsNode, tmp_path: Path) -> None:
    folder, cid = make_output(tmp_path / "out")
    with FakePinningService(ipfs_node.api_url, token=TOKEN) as service:
        settings = settings_for(
            tmp_path,
            pinning_service_url=service.url,
            pinning_service_token="wrong",
            publish_targets="pinning_service",
        )
        with pytest.raises(PublishIncomplete, match="UNAUTHORIZED"):
            publish(folder, settings, cid)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"publish_targets": "local,ftp"}, "unknown target 'ftp'"),
        ({"publish_targets": "hotnode"}, "TRAFFIC_DIRECTOR_URL"),
        ({"publish_targets": "local", "publish_required": "cluster"}, "PUBLISH_REQUIRED"),
    ],
)
def test_configuration_errors_name_the_setting(
    ipfs_node: JsIpfsNode, tmp_path: Path, values: dict[str, str], message: str
) -> None:
    folder, cid = make_output(tmp_path / "out")
    settings = settings_for(tmp_path, ipfs_api_addr=ipfs_node.api_url, **values)
    with pytest.raises(ConfigError, match=message):
        publish(folder, settings, cid)


def test_local_store_moves_by_cid_and_drops_duplicates(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    folder, cid = make_output(tmp_path / "out")
    stored = keep_folder(folder, settings)
    assert stored.cid == cid
    assert not stored.reused
    assert stored.path == stored_path(settings, cid)
    assert stored.path.is_dir()
    assert not folder.exists()
    assert str(import_folder(stored.path)) == cid

    # the same output encoded again: verified and dropped
    copy = tmp_path / "again"
    copy.mkdir()
    for rel in ["480p/480p_0.ts", "480p/index.m3u8", "manifest.m3u8"]:
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_bytes((stored.path / rel).read_bytes())
    again = keep_folder(copy, settings, cid=cid)
    assert again.reused
    assert not copy.exists()


def test_cid_and_car_commands(ipfs_node: JsIpfsNode, tmp_path: Path, capsys: Any) -> None:
    folder, cid = make_output(tmp_path / "out")
    parser = argparse.ArgumentParser()
    add_storage_commands(parser.add_subparsers())
    settings = settings_for(tmp_path)
    args = parser.parse_args(["cid", str(folder)])
    assert args.func(args, settings) == 0
    assert capsys.readouterr().out.strip() == cid
    args = parser.parse_args(["cid", str(folder), "--cid-version", "1", "--json"])
    assert args.func(args, settings) == 0
    assert json.loads(capsys.readouterr().out)["cid"].startswith("bafybei")
    args = parser.parse_args(["car", str(folder), "-o", str(tmp_path / "o.car")])
    assert args.func(args, settings) == 0
    assert capsys.readouterr().out.strip() == cid
    with open(tmp_path / "o.car", "rb") as handle:
        response = httpx.post(
            f"{ipfs_node.api_url}/api/v0/dag/import",
            files={"file": ("o.car", handle)},
            timeout=60,
        )
    assert json.loads(response.text.splitlines()[0])["Root"]["Cid"]["/"] == cid
