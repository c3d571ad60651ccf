"""`speak-encoder doctor`: every check against real peers where they can run here.

Real ffmpeg/ffprobe, the session's real IPFS node (js-ipfs), the reference 3Speak gateway, real
sockets for the unreachable and the silent peer (the doctor must not hang on either), a real
key file; one injected transport for a pinning service that refuses its token.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from speak_encoder.cli_doctor import add_doctor_commands, health_url
from speak_encoder.config import Settings
from speak_encoder.doctor import (
    Check,
    check_config,
    check_disk,
    check_identity,
    check_permissions,
    failed,
    run_checks,
)
from speak_encoder.node.identity import NodeIdentity, key_file_path, write_key_file
from speak_encoder.testing.embed_server import EmbedServer
from speak_encoder.testing.gateway import ReferenceGateway
from speak_encoder.testing.ipfs_node import JsIpfsNode

SEED = base64.b64encode(bytes(range(32))).decode()


def make_settings(tmp_path: Path, **extra: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "node_name": "doctor-node",
        "publish_targets": "",
        "ipfs_api_addr": "",
        "hardware_acceleration": False,
        "disk_reserve_mb": 1,
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def run(settings: Settings, **kwargs: object) -> dict[str, Check]:
    return by_name(asyncio.run(run_checks(settings, hardware=False, **kwargs)))  # type: ignore[arg-type]


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A peer that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def test_a_minimal_node_passes_with_real_ffmpeg(tmp_path: Path) -> None:
    checks = run(make_settings(tmp_path))
    assert checks["ffmpeg"].status == "ok" and checks["ffmpeg"].detail[0].isdigit()
    assert "libx264" in checks["ffmpeg"].detail
    assert checks["ffprobe"].status == "ok"
    assert checks["ffmpeg hdr"].status in ("ok", "warn")
    assert checks["ipfs"].status == "skip" and "not configured" in checks["ipfs"].detail
    assert checks["gateway"].status == "skip" and checks["identity"].status == "skip"
    assert checks["store"].status == "ok" and checks["disk"].status == "ok"
    assert checks["permissions DATA_DIR"].status == "ok"
    assert not failed(list(checks.values()))
    assert not (tmp_path / "data").exists(), "the doctor creates nothing"


def test_missing_ffmpeg_fails(tmp_path: Path) -> None:
    checks = run(make_settings(tmp_path, ffmpeg_path=str(tmp_path / "no-ffmpeg")))
    assert checks["ffmpeg"].status == "fail" and "not found" in checks["ffmpeg"].detail
    assert checks["ffprobe"].status == "ok"


def test_ipfs_node_answers_with_its_peer_id(tmp_path: Path, ipfs_node: JsIpfsNode) -> None:
    checks = run(make_settings(tmp_path, publish_targets="local", ipfs_api_addr=ipfs_node.api_url))
    assert checks["ipfs"].status == "ok", checks["ipfs"]
    assert "peer " in checks["ipfs"].detail and "version" in checks["ipfs"].detail


def test_unreachable_ipfs_fails_when_it_is_a_publish_target(
    tmp_path: Path, closed_port: int
) -> None:
    address = f"/ip4/127.0.0.1/tcp/{closed_port}"
    needed = run(make_settings(tmp_path, publish_targets="local", ipfs_api_addr=address))
    assert needed["ipfs"].status == "fail"
    optional = run(make_settings(tmp_path, ipfs_api_addr=address))
    assert optional["ipfs"].status == "warn"
    empty = run(make_settings(tmp_path, publish_targets="local"))
    assert empty["ipfs"].status == "fail" and "not configured" in empty["ipfs"].detail


@pytest.mark.timeout(60)  # the hang guard; the detail below names the check's own timeout
def test_a_silent_peer_times_out_instead_of_hanging(tmp_path: Path, silent_port: int) -> None:
    url = f"http://127.0.0.1:{silent_port}"
    settings = make_settings(
        tmp_path,
        publish_targets="cluster,supernode",
        ipfs_cluster_url=url,
        threespeak_ipfs_endpoint=url,
        gateway_enabled=True,
        gateway_url=url,
    )
    checks = run(settings, timeout=0.5)
    for name in ("target cluster", "target supernode", "gateway"):
        assert checks[name].status == "fail" and "no answer in time" in checks[name].detail


def test_remote_targets_credentials_are_checked_and_never_shown(
    tmp_path: Path, closed_port: int
) -> None:
    def pinning_service(request: httpx.Request) -> httpx.Response:
        ok = request.headers.get("authorization") == "Bearer right-token"
        return httpx.Response(200 if ok else 401, json={"count": 0, "results": []})

    transport = httpx.MockTransport(pinning_service)
    base = {
        "publish_targets": "pinning_service,cluster,hotnode",
        "pinning_service_url": "https://pins.example/api",
        "ipfs_cluster_url": f"http://admin:cluster-pass@127.0.0.1:{closed_port}",
    }
    wrong = run(make_settings(tmp_path, **base, pinning_service_token="wrong"), transport=transport)
    assert wrong["target pinning_service"].status == "fail"
    assert "refused" in wrong["target pinning_service"].detail
    assert wrong["target hotnode"].status == "fail"
    assert "TRAFFIC_DIRECTOR_URL" in wrong["target hotnode"].detail
    right = run(
        make_settings(tmp_path, **base, pinning_service_token="right-token"), transport=transport
    )
    assert right["target pinning_service"].status == "ok"
    cluster = asyncio.run(run_checks(make_settings(tmp_path, **base), hardware=False, timeout=2))
    detail = by_name(cluster)["target cluster"].detail
    assert "cannot connect" in detail and "cluster-pass" not in detail and "***" in detail


def test_gateways_against_the_reference_gateway(tmp_path: Path, closed_port: int) -> None:
    with ReferenceGateway() as gateway, EmbedServer() as embed:
        checks = run(
            make_settings(
                tmp_path,
                gateway_enabled=True,
                gateway_url=gateway.url,
                embed_gateway_enabled=True,
                embed_gateway_url=embed.url,
                encoder_private_key=SEED,
            )
        )
    assert checks["gateway"].status == "ok", checks["gateway"]
    assert "/api/v0/gateway/stats" in checks["gateway"].detail
    assert checks["embed gateway"].status == "ok", checks["embed gateway"]
    down = run(
        make_settings(
            tmp_path,
            embed_gateway_enabled=True,
            embed_gateway_url=f"http://127.0.0.1:{closed_port}",
            encoder_private_key=SEED,
        )
    )
    assert down["embed gateway"].status == "fail"


def test_identity_from_the_environment_or_a_private_key_file(tmp_path: Path) -> None:
    from_env = check_identity(make_settings(tmp_path, encoder_private_key=SEED))[0]
    did = NodeIdentity.from_base64(SEED).did
    assert from_env.status == "ok" and did in from_env.detail
    assert "ENCODER_PRIVATE_KEY" in from_env.detail and SEED not in from_env.detail

    settings = make_settings(tmp_path)
    path = key_file_path(settings)
    write_key_file(path, NodeIdentity.from_base64(SEED))
    from_file = check_identity(settings)[0]
    assert from_file.status == "ok" and "mode 0600" in from_file.detail and did in from_file.detail
    os.chmod(path, 0o644)
    leaky = check_identity(settings)[0]
    assert leaky.status == "fail" and "chmod 600" in leaky.detail

    missing = check_identity(make_settings(tmp_path / "other", gateway_enabled=True))[0]
    assert missing.status == "fail" and "keygen" in missing.detail


def test_disk_below_the_reserve_fails(tmp_path: Path) -> None:
    assert check_disk(make_settings(tmp_path, disk_reserve_mb=10**9))[0].status == "fail"
    assert check_disk(make_settings(tmp_path))[0].status in ("ok", "warn")


def test_permissions_of_a_path_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    checks = by_name(check_permissions(make_settings(tmp_path, data_dir=blocker / "data")))
    assert checks["permissions DATA_DIR"].status == "fail"
    assert "not a folder" in checks["permissions DATA_DIR"].detail


def test_config_sanity(tmp_path: Path) -> None:
    bad = by_name_all(check_config(make_settings(tmp_path, direct_api_enabled=True)))
    assert any(c.status == "fail" and "DIRECT_API_KEY" in c.detail for c in bad)
    assert "every request is refused" in " ".join(c.detail for c in bad)
    exposed = check_config(
        make_settings(
            tmp_path,
            direct_api_enabled=True,
            direct_api_key="k" * 32,
            direct_api_host="0.0.0.0",
            webhook_secret="w" * 32,
        ),
        dashboard_host="0.0.0.0",
    )
    texts = [c.detail for c in exposed if c.status == "warn"]
    assert any("DIRECT_API_HOST=0.0.0.0" in t for t in texts)
    assert any("DASHBOARD_HOST=0.0.0.0" in t for t in texts)
    assert not failed(exposed)
    quiet = check_config(make_settings(tmp_path))
    assert [c.status for c in quiet] == ["ok"]


def by_name_all(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.name == "config"]


def _doctor(argv: list[str], settings: Settings) -> int:
    parser = argparse.ArgumentParser()
    add_doctor_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code: int = args.func(args, settings)
    return code


def test_cli_table_json_and_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], closed_port: int
) -> None:
    good = make_settings(tmp_path)
    assert _doctor(["doctor", "--no-hardware"], good) == 0
    out = capsys.readouterr().out
    assert "speak-encoder doctor" in out and "ffmpeg" in out and "OK:" in out

    bad = make_settings(
        tmp_path,
        publish_targets="local",
        ipfs_api_addr=f"/ip4/127.0.0.1/tcp/{closed_port}",
        direct_api_enabled=True,
    )
    assert _doctor(["doctor", "--json", "--no-hardware", "--timeout", "1"], bad) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    statuses = {c["name"]: c["status"] for c in doc["checks"]}
    assert statuses["ipfs"] == "fail" and statuses["ffmpeg"] == "ok"


def test_cli_hardware_check_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path, hardware_acceleration=True)
    _doctor(["doctor", "--json"], settings)
    doc = json.loads(capsys.readouterr().out)
    hardware = next(c for c in doc["checks"] if c["name"] == "hardware")
    assert hardware["status"] in ("ok", "warn") and "jobs use" in hardware["detail"]


def test_healthcheck_url_and_exit_codes(tmp_path: Path, closed_port: int) -> None:
    settings = make_settings(tmp_path)
    assert health_url(settings) == "http://127.0.0.1:3001/health"
    assert (
        _doctor(["healthcheck", "--url", f"http://127.0.0.1:{closed_port}/health"], settings) == 1
    )
    with ReferenceGateway() as gateway:  # any HTTP server: a 404 is unhealthy, a 200 healthy
        assert _doctor(["healthcheck", "--url", f"{gateway.url}/nothing-here"], settings) == 1
