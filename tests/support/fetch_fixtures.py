"""Fixtures of the fetch stage: the fault-injecting HTTP server and fetch-friendly settings."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from speak_encoder.config import Settings, load_settings
from speak_encoder.storage.unixfs import FileImporter
from speak_encoder.testing.http_faults import FaultServer, Payload

#: A syntactically valid CIDv0 and CIDv1 (they need not exist anywhere).
CID_V0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
CID_V1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"


def payload_cid(payload: Payload, *, cid_version: int = 0) -> str:
    """The CID ``ipfs add`` gives ``payload`` (what a gateway serving it must match)."""
    importer = FileImporter(cid_version=cid_version)
    step = 1024 * 1024
    for start in range(0, payload.size, step):
        importer.update(payload.read(start, min(payload.size, start + step)))
    return str(importer.finish().cid)


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A running :class:`FaultServer` on 127.0.0.1 (stopped after the test)."""
    with FaultServer() as server:
        yield server


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nobody listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    path = tmp_path / "job"
    path.mkdir()
    return path


@pytest.fixture
def fetch_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Build settings for fetch tests: no Kubo, no gateways, short timeouts, no disk reserve.

    Keyword arguments override (``fetch_settings(fetch_stall_timeout=1, ipfs_gateways=…)``).
    """

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "temp_dir": tmp_path / "work",
            "data_dir": tmp_path / "data",
            "fetch_stall_timeout": 5,
            "fetch_connect_timeout": 2,
            "ipfs_api_addr": "",
            "ipfs_gateways": "",
            "disk_reserve_mb": 0,
        }
        values.update(overrides)
        return load_settings(**values)

    return build
