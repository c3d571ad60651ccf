"""The fetch stage against a real (fault-injecting) HTTP server over real sockets."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from speak_encoder import USER_AGENT
from speak_encoder.config import Settings
from speak_encoder.errors import (
    InsufficientDisk,
    NetworkError,
    SourceNotFound,
    SourceRejected,
    SourceTooLarge,
    StallError,
    UpstreamError,
)
from speak_encoder.pipeline.fetch import (
    FetchedSource,
    FetchProgress,
    fetch_source,
    kubo_api_url,
    redact_url,
)
from speak_encoder.pipeline.source import SourceRef, parse_source
from speak_encoder.testing.http_faults import FaultServer, PatternPayload
from tests.support.fetch_fixtures import CID_V0, CID_V1, payload_cid

MiB = 1024 * 1024
SettingsFactory = Callable[..., Settings]


def fetch(ref: SourceRef, job_dir: Path, settings: Settings, **kwargs: object) -> FetchedSource:
    return asyncio.run(fetch_source(ref, job_dir, settings, **kwargs))  # type: ignore[arg-type]


def leftovers(job_dir: Path) -> list[str]:
    return sorted(p.name for p in job_dir.iterdir())


def http_ref(server: FaultServer, path: str) -> SourceRef:
    return parse_source(server.url(path))


# --- plain HTTP -----------------------------------------------------------------------------


def test_full_download(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    payload = PatternPayload(3 * MiB + 17)
    fault_server.add("/videos/clip.mp4", payload)
    reports: list[FetchProgress] = []
    got = fetch(
        http_ref(fault_server, "/videos/clip.mp4"),
        job_dir,
        fetch_settings(),
        on_progress=reports.append,
    )
    assert got.path == job_dir / "source.mp4"
    assert got.size == payload.size == got.path.stat().st_size
    assert got.sha256 == payload.sha256()
    assert got.origin == fault_server.url("/videos/clip.mp4")
    assert reports[-1] == FetchProgress("fetch", payload.size, payload.size, got.origin)
    assert len(reports) < 20  # throttled
    (request,) = fault_server.requests
    assert request.headers["user-agent"] == USER_AGENT
    assert "range" not in request.headers


def test_drop_mid_file_is_resumed_with_range(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    payload = PatternPayload(4 * MiB)
    fault_server.add("/v.mp4", payload, drop_after=1_000_000, drop_times=2)
    got = fetch(http_ref(fault_server, "/v.mp4"), job_dir, fetch_settings())
    assert got.sha256 == payload.sha256()
    first, second, third = fault_server.requests_for("/v.mp4")
    assert "range" not in first.headers
    assert second.headers["range"] == "bytes=1000000-"
    assert second.headers["if-range"] == '"v1"'
    assert third.headers["range"] == "bytes=2000000-"


def test_server_ignoring_range_restarts_from_zero(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    payload = PatternPayload(2 * MiB)
    fault_server.add("/v.webm", payload, drop_after=700_000, ignore_range=True)
    got = fetch(http_ref(fault_server, "/v.webm"), job_dir, fetch_settings())
    assert (got.size, got.sha256) == (payload.size, payload.sha256())
    assert got.path.name == "source.webm"
    assert fault_server.requests_for("/v.webm")[1].headers["range"] == "bytes=700000-"


def test_changed_file_if_range_mismatch_restarts(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    payload = PatternPayload(MiB)
    fault_server.add("/v", payload, drop_after=300_000, etag='"v2"')
    got = fetch(http_ref(fault_server, "/v"), job_dir, fetch_settings())
    assert got.sha256 == payload.sha256()
    assert got.path.name == "source"


@pytest.mark.timeout(60)
def test_stall_raises_stall_error_and_leaves_nothing(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    fault_server.add("/s.mp4", PatternPayload(2 * MiB), stall_after=100_000, drop_times=99)
    settings = fetch_settings(fetch_stall_timeout=1, fetch_resumes=1)
    with pytest.raises(StallError, match=r"1 s .*after 200000 bytes") as caught:
        fetch(http_ref(fault_server, "/s.mp4"), job_dir, settings)
    assert caught.value.retryable
    assert len(fault_server.requests_for("/s.mp4")) == 2  # one resume, then give up
    assert leftovers(job_dir) == []


def test_stall_then_resume_succeeds(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    payload = PatternPayload(MiB)
    fault_server.add("/s", payload, stall_after=200_000)
    got = fetch(http_ref(fault_server, "/s"), job_dir, fetch_settings(fetch_stall_timeout=1))
    assert got.sha256 == payload.sha256()
    assert fault_server.requests_for("/s")[1].headers["range"] == "bytes=200000-"


@pytest.mark.timeout(60)
def test_trickle_is_bounded_by_minimum_rate(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    fault_server.add("/t", PatternPayload(MiB), trickle=0.05, trickle_bytes=1)
    settings = fetch_settings(fetch_stall_timeout=1, fetch_resumes=0)
    # 1 byte every 50 ms would take ~15 h for 1 MiB: the minimum rate ends it within seconds
    # (the test's own timeout mark is the hang guard)
    with pytest.raises(StallError, match=r"almost nothing\) for 1 s"):
        fetch(http_ref(fault_server, "/t"), job_dir, settings)
    assert leftovers(job_dir) == []


def test_announcing_more_than_sent_is_a_clear_error(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    payload = PatternPayload(500_000)
    fault_server.add("/lie", payload, lie_length=payload.size + 50_000)
    with pytest.raises(SourceRejected, match="shorter than it announced"):
        fetch(http_ref(fault_server, "/lie"), job_dir, fetch_settings())
    assert fault_server.requests_for("/lie")[1].headers["range"] == "bytes=500000-"
    assert leftovers(job_dir) == []


def test_announcing_more_than_the_maximum_refuses_before_the_body(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    fault_server.add("/big", PatternPayload(64 * MiB))
    with pytest.raises(SourceTooLarge, match=r"64\.0 MB, more than the maximum of 1\.0 MB"):
        fetch(http_ref(fault_server, "/big"), job_dir, fetch_settings(max_source_mb=1))
    assert fault_server.body_bytes_sent("/big") < 16 * MiB
    assert leftovers(job_dir) == []


def test_lying_small_length_over_maximum(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    fault_server.add("/lie", PatternPayload(1000), lie_length=5 * MiB)
    with pytest.raises(SourceTooLarge):
        fetch(http_ref(fault_server, "/lie"), job_dir, fetch_settings(max_source_mb=1))


def test_unannounced_body_over_maximum_is_cut(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    fault_server.add("/chunked", PatternPayload(3 * MiB), chunked=True)
    with pytest.raises(SourceTooLarge, match="download"):
        fetch(http_ref(fault_server, "/chunked"), job_dir, fetch_settings(max_source_mb=1))
    assert leftovers(job_dir) == []


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        (404, SourceNotFound, "HTTP 404"),
        (410, SourceNotFound, "HTTP 410"),
        (403, SourceRejected, "HTTP 403"),
        (401, SourceRejected, "HTTP 401"),
        (500, UpstreamError, "HTTP 500"),
        (503, UpstreamError, "HTTP 503"),
        (429, UpstreamError, "HTTP 429"),
    ],
)
def test_status_codes(
    status: int,
    error: type[Exception],
    text: str,
    fault_server: FaultServer,
    job_dir: Path,
    fetch_settings: SettingsFactory,
) -> None:
    fault_server.add("/x.mp4", PatternPayload(1000), status=status)
    with pytest.raises(error, match=text) as caught:
        fetch(http_ref(fault_server, "/x.mp4"), job_dir, fetch_settings())
    assert caught.value.retryable is (status >= 429 and status not in (403, 401, 404, 410))  # type: ignore[attr-defined]
    assert leftovers(job_dir) == []


@pytest.mark.parametrize("fault", ["html", "html_sniff"])
def test_html_page_is_rejected(
    fault: str, fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    fault_server.add("/v.mp4", b"", **{fault: True})
    with pytest.raises(SourceRejected, match="returned an HTML page, not a video"):
        fetch(http_ref(fault_server, "/v.mp4"), job_dir, fetch_settings())
    assert leftovers(job_dir) == []


def test_empty_body_is_rejected(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    fault_server.add("/empty.mp4", b"")
    with pytest.raises(SourceRejected, match=r"empty file \(0 bytes\)"):
        fetch(http_ref(fault_server, "/empty.mp4"), job_dir, fetch_settings())
    assert leftovers(job_dir) == []


def test_an_injected_transport_is_used(job_dir: Path, fetch_settings: SettingsFactory) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"\x00\x00\x00\x18ftypmp42")

    ref = parse_source("https://videos.example/a.mp4")
    got = fetch(ref, job_dir, fetch_settings(), transport=httpx.MockTransport(handler))
    assert got.size == 12
    assert seen[0].headers["user-agent"] == USER_AGENT


def test_secrets_never_appear_in_messages(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    url = f"http://alice:hunter2@127.0.0.1:{fault_server.port}/missing.mp4?token=s3cr3t"
    reports: list[FetchProgress] = []
    with pytest.raises(SourceNotFound) as caught:
        fetch(parse_source(url), job_dir, fetch_settings(), on_progress=reports.append)
    for text in [caught.value.message, *(r.origin for r in reports)]:
        assert "hunter2" not in text
        assert "s3cr3t" not in text
    assert f"127.0.0.1:{fault_server.port}/missing.mp4" in caught.value.message


def test_redirects_are_followed_but_bounded(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    payload = PatternPayload(100_000)
    fault_server.add("/final.mp4", payload)
    fault_server.add("/go", b"", redirect="/final.mp4")
    got = fetch(http_ref(fault_server, "/go"), job_dir, fetch_settings())
    assert got.sha256 == payload.sha256()
    fault_server.add("/loop", b"", redirect="/loop")
    with pytest.raises(SourceRejected, match="redirected more than 5 times"):
        fetch(http_ref(fault_server, "/loop"), job_dir, fetch_settings())


def test_connection_refused_is_a_network_error(
    closed_port: int, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    ref = parse_source(f"http://127.0.0.1:{closed_port}/v.mp4")
    with pytest.raises(NetworkError, match="could not connect") as caught:
        fetch(ref, job_dir, fetch_settings())
    assert caught.value.retryable
    assert leftovers(job_dir) == []


def test_insufficient_disk_before_download(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    fault_server.add("/v.mp4", PatternPayload(1000))
    with pytest.raises(InsufficientDisk, match="DISK_RESERVE_MB"):
        fetch(http_ref(fault_server, "/v.mp4"), job_dir, fetch_settings(disk_reserve_mb=10**9))
    assert fault_server.requests == []
    assert leftovers(job_dir) == []


def test_cancellation_propagates_and_removes_the_partial(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    fault_server.add("/slow.mp4", PatternPayload(4 * MiB), stall_after=1 * MiB)
    settings = fetch_settings(fetch_stall_timeout=30)

    async def scenario() -> None:
        task = asyncio.create_task(
            fetch_source(http_ref(fault_server, "/slow.mp4"), job_dir, settings)
        )
        partial = job_dir / "source.mp4"
        for _ in range(200):
            if partial.exists() and partial.stat().st_size > 0:
                break
            await asyncio.sleep(0.02)
        assert partial.stat().st_size > 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert leftovers(job_dir) == []


# --- IPFS origins -------------------------------------------------------------------------


def test_kubo_down_falls_back_to_gateway(
    fault_server: FaultServer,
    closed_port: int,
    job_dir: Path,
    fetch_settings: SettingsFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    payload = PatternPayload(MiB)
    cid = payload_cid(payload)
    gateway = fault_server.add_gateway(cid, payload)
    settings = fetch_settings(
        ipfs_api_addr=f"/ip4/127.0.0.1/tcp/{closed_port}", ipfs_gateways=gateway
    )
    with caplog.at_level(logging.DEBUG, logger="speak_encoder"):
        got = fetch(parse_source(f"ipfs://{cid}"), job_dir, settings)
    assert (got.sha256, got.origin, got.path.name) == (payload.sha256(), gateway, "source")
    # the refused connection ends the Kubo origin at once: no resume back-off before the gateway
    assert not [r for r in caplog.records if "resuming at byte" in r.getMessage()]
    assert any("local kubo could not serve" in r.getMessage() for r in caplog.records)


def test_kubo_cat_is_preferred_and_resumed_with_offset(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    payload = PatternPayload(2 * MiB)
    api = fault_server.add_kubo(CID_V1, payload, drop_after=500_000)
    gateway = fault_server.add_gateway(CID_V1, PatternPayload(2 * MiB, seed=9))
    got = fetch(
        parse_source(CID_V1), job_dir, fetch_settings(ipfs_api_addr=api, ipfs_gateways=gateway)
    )
    assert (got.sha256, got.origin) == (payload.sha256(), "local kubo")
    first, second = fault_server.requests_for("/api/v0/cat")
    assert (first.method, first.query) == ("POST", {"arg": CID_V1})
    assert second.query == {"arg": CID_V1, "offset": "500000"}
    assert fault_server.requests_for(f"/ipfs/{CID_V1}") == []


def test_silent_kubo_fails_over_without_resuming(
    fault_server: FaultServer,
    job_dir: Path,
    fetch_settings: SettingsFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    payload = PatternPayload(200_000)
    cid = payload_cid(payload)
    api = fault_server.add_kubo(cid, payload, stall_after=0, drop_times=99)
    gateway = fault_server.add_gateway(cid, payload)
    settings = fetch_settings(
        ipfs_api_addr=api, ipfs_gateways=gateway, fetch_stall_timeout=1, fetch_resumes=5
    )
    with caplog.at_level(logging.DEBUG, logger="speak_encoder"):
        got = fetch(parse_source(cid), job_dir, settings)
    assert (got.sha256, got.origin) == (payload.sha256(), gateway)
    assert not [r for r in caplog.records if "resuming at byte" in r.getMessage()]
    assert len(fault_server.requests_for("/api/v0/cat")) == 1


def test_kubo_not_found_then_gateway_404s_is_not_found(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    base = fault_server.base_url
    settings = fetch_settings(
        ipfs_api_addr=f"/ip4/127.0.0.1/tcp/{fault_server.port}",
        ipfs_gateways=f"{base},{base}/other",
    )
    with pytest.raises(SourceNotFound, match="not found on any origin") as caught:
        fetch(parse_source(CID_V0), job_dir, settings)
    assert "local kubo: block was not found" in caught.value.message
    assert f"{base}/other: " in caught.value.message
    paths = [r.path for r in fault_server.requests]
    assert paths == ["/api/v0/cat", f"/ipfs/{CID_V0}", f"/other/ipfs/{CID_V0}"]
    assert leftovers(job_dir) == []


def test_mixed_failures_raise_the_retryable_one(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    base = fault_server.base_url
    fault_server.add(f"/a/ipfs/{CID_V0}", b"", status=502)
    settings = fetch_settings(ipfs_gateways=f"{base}/a,{base}/b")
    with pytest.raises(UpstreamError, match="from any origin") as caught:
        fetch(parse_source(CID_V0), job_dir, settings)
    assert "HTTP 502" in caught.value.message
    assert "HTTP 404" in caught.value.message


def test_gateway_of_an_ipfs_url_is_tried_first(
    fault_server: FaultServer, closed_port: int, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    payload = PatternPayload(300_000)
    cid = payload_cid(payload, cid_version=1)
    fault_server.add(f"/gw/ipfs/{cid}", payload)
    ref = parse_source(f"{fault_server.base_url}/gw/ipfs/{cid}/file.mp4?filename=x")
    settings = fetch_settings(ipfs_gateways=f"http://127.0.0.1:{closed_port}")
    got = fetch(ref, job_dir, settings)
    assert got.sha256 == payload.sha256()
    assert got.origin == f"{fault_server.base_url}/gw"


def test_kubo_sending_more_than_announced_is_rejected(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    api = fault_server.add_kubo(CID_V0, PatternPayload(400_000), lie_length=100_000)
    with pytest.raises(SourceRejected, match="more bytes than the 100000 it announced"):
        fetch(parse_source(CID_V0), job_dir, fetch_settings(ipfs_api_addr=api))
    assert leftovers(job_dir) == []


def test_kubo_directory_listing_html_is_rejected(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    gateway = fault_server.add_gateway(CID_V0, b"", html=True)
    with pytest.raises(SourceRejected, match=r"HTML page.*folder"):
        fetch(parse_source(CID_V0), job_dir, fetch_settings(ipfs_gateways=gateway))


# --- local files --------------------------------------------------------------------------


def test_local_file_is_hashed_in_place(
    tmp_path: Path, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    path = tmp_path / "clip.mp4"
    data = os.urandom(3 * MiB + 5)
    path.write_bytes(data)
    reports: list[FetchProgress] = []
    got = fetch(parse_source(str(path)), job_dir, fetch_settings(), on_progress=reports.append)
    assert got == FetchedSource(path, len(data), hashlib.sha256(data).hexdigest(), "local file")
    assert reports[-1].done_bytes == len(data)
    assert leftovers(job_dir) == []


def test_local_file_errors(tmp_path: Path, job_dir: Path, fetch_settings: SettingsFactory) -> None:
    settings = fetch_settings(max_source_mb=1)
    with pytest.raises(SourceNotFound, match="not found"):
        fetch(parse_source(str(tmp_path / "missing.mp4")), job_dir, settings)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(SourceRejected, match=r"source file is empty \(0 bytes\)"):
        fetch(parse_source(str(empty)), job_dir, settings)
    with pytest.raises(SourceRejected, match="directory"):
        fetch(parse_source(str(tmp_path)), job_dir, settings)
    big = tmp_path / "big.mp4"
    with big.open("wb") as handle:
        handle.truncate(2 * MiB)  # sparse: costs no disk
    with pytest.raises(SourceTooLarge, match=r"2\.0 MB, more than the maximum of 1\.0 MB"):
        fetch(parse_source(str(big)), job_dir, settings)
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(SourceRejected, match="not a regular file"):
        fetch(parse_source(str(fifo)), job_dir, settings)


# --- pure helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addr", "url"),
    [
        ("/ip4/127.0.0.1/tcp/5001", "http://127.0.0.1:5001"),
        ("/ip6/::1/tcp/5001", "http://[::1]:5001"),
        ("/dns4/ipfs.local/tcp/5001/http", "http://ipfs.local:5001"),
        ("/dns/ipfs.example/tcp/443/https", "https://ipfs.example:443"),
        ("http://10.0.0.2:5001/", "http://10.0.0.2:5001"),
        ("http://10.0.0.2:5001/api/v0", "http://10.0.0.2:5001"),
        ("", None),
        ("/ip4/127.0.0.1/udp/5001", None),
        ("/unix/tmp/kubo.sock", None),
    ],
)
def test_kubo_api_url(addr: str, url: str | None) -> None:
    assert kubo_api_url(addr) == url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p@host.example:8443/a/b.mp4?sig=1#x", "https://host.example:8443/a/b.mp4"),
        ("http://host/v.mp4", "http://host/v.mp4"),
        ("https://[::1]:8080/v", "https://[::1]:8080/v"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# --- memory -------------------------------------------------------------------------------


@pytest.mark.slow
def test_large_download_keeps_memory_flat(
    fault_server: FaultServer, job_dir: Path, fetch_settings: SettingsFactory
) -> None:
    payload = PatternPayload(200 * MiB)
    fault_server.add("/huge.mp4", payload, drop_after=80 * MiB)
    process = psutil.Process()
    before = process.memory_info().rss
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.01):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        got = fetch(http_ref(fault_server, "/huge.mp4"), job_dir, fetch_settings())
    finally:
        done.set()
        sampler.join()
    assert got.size == payload.size
    assert got.sha256 == payload.sha256()
    assert peak - before < 30 * MiB, f"RSS grew by {(peak - before) / MiB:.1f} MiB"
