"""Item 3: idle and half-sent requests cannot tie up a node's HTTP servers or its file limit.

A real `speak-encoder run` under a 256-descriptor limit (as a small container or a careless
unit file would give it), with the Direct API and the operator server, gets 300 loopback sockets
that each send only the start of a request — a head that never ends, or a 60 kB body announced
and never sent. Throughout, both `/health` endpoints answer, a job still runs to completion, the
servers close every such socket on their own, and the log stays small.
"""

from __future__ import annotations

import contextlib
import resource
import select
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from speak_encoder.logs import RateLimiter
from speak_encoder.node.models import JobState
from speak_encoder.testing.ipfs_node import free_port
from tests.support.node_fixtures import CLI, NodeProcess

#: Descriptors the node may open, and the idle sockets thrown at it.
NODE_FD_LIMIT = 256
IDLE_SOCKETS = 300
API_KEY = "slowloris-test-key-0123456789"
#: Seconds the servers give a head, then a body (short so the test sees them expire).
READ_TIMEOUT_S = 3
#: The node's log may grow this much during the attack (it grew 51 MB in 45 s before).
LOG_GROWTH_BYTES = 256 * 1024


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NODE_FD_LIMIT, NODE_FD_LIMIT))


def start_limited(node: NodeProcess) -> None:
    """`speak-encoder run` like NodeProcess.start, but under the descriptor limit."""
    node.data_dir.mkdir(parents=True, exist_ok=True)
    with node.log_path.open("ab") as log:
        node.proc = subprocess.Popen(
            [*CLI, "run"], env=node.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, preexec_fn=_limited,
        )  # fmt: skip


def health(url: str) -> int:
    return httpx.get(f"{url}/health", timeout=10).status_code


@contextlib.contextmanager
def idle_sockets(ports: list[int], count: int) -> Iterator[list[socket.socket]]:
    """``count`` sockets spread over ``ports``: 2 in 3 send half a head, 1 in 3 a head that
    announces a 60 kB body and no body."""
    socks: list[socket.socket] = []
    try:
        for i in range(count):
            sock = socket.create_connection(("127.0.0.1", ports[i % len(ports)]), timeout=10)
            if i % 3 == 2:
                sock.sendall(
                    b"POST /encode HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{"
                )
            else:
                sock.sendall(b"POST /encode HTTP/1.1\r\nHost: x\r\n")
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def closed_by_server(socks: list[socket.socket], timeout: float) -> int:
    """How many of ``socks`` the server closed (EOF or reset) within ``timeout`` seconds."""
    pending = {s.fileno(): s for s in socks}
    closed = 0
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        ready, _, _ = select.select(list(pending.values()), [], [], 0.5)
        for sock in ready:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                data = b""
            if not data:  # an answer (503/400) may come first: wait for the EOF after it
                closed += 1
                del pending[sock.fileno()]
    return closed


@pytest.mark.slow
def test_300_idle_sockets_under_a_256_fd_limit(
    make_node: Callable[..., NodeProcess], sample: Callable[[str], Path]
) -> None:
    api_port = free_port()
    node = make_node(
        DIRECT_API_ENABLED="true", DIRECT_API_PORT=str(api_port), DIRECT_API_KEY=API_KEY,
        HTTP_HEADER_TIMEOUT=str(READ_TIMEOUT_S), HTTP_BODY_TIMEOUT=str(READ_TIMEOUT_S),
        HARDWARE_ACCELERATION="false",
    )  # fmt: skip
    dashboard = f"http://127.0.0.1:{node.env['DASHBOARD_PORT']}"
    api = f"http://127.0.0.1:{api_port}"
    start_limited(node)
    node.wait_healthy(dashboard, request_timeout=10)
    node.wait_healthy(api, request_timeout=10)
    log_before = node.log_path.stat().st_size
    ports = [int(node.env["DASHBOARD_PORT"]), api_port]
    with idle_sockets(ports, IDLE_SOCKETS) as socks:
        job_id = node.submit(str(sample("landscape")))  # a job runs during the attack
        for _ in range(10):
            assert health(dashboard) == 200
            assert health(api) == 200
        node.wait_for(job_id, lambda j: j.state is JobState.COMPLETE, timeout=120,
                      what="a job during the attack")  # fmt: skip
        assert health(dashboard) == 200 and health(api) == 200
        # every idle socket is closed by the servers themselves (evicted or out of time)
        assert closed_by_server(socks, timeout=READ_TIMEOUT_S * 10) == IDLE_SOCKETS
    assert node.alive()
    assert "Too many open files" not in node.log()
    assert node.log_path.stat().st_size - log_before < LOG_GROWTH_BYTES


@pytest.mark.slow
def test_a_head_that_never_ends_is_closed_after_the_header_timeout(
    make_node: Callable[..., NodeProcess],
) -> None:
    node = make_node(HTTP_HEADER_TIMEOUT="2", HARDWARE_ACCELERATION="false")
    node.start()
    url = f"http://127.0.0.1:{node.env['DASHBOARD_PORT']}"
    node.wait_healthy(url, request_timeout=10)
    with idle_sockets([int(node.env["DASHBOARD_PORT"])], 1) as socks:
        started = time.monotonic()
        assert closed_by_server(socks, timeout=30) == 1
        assert time.monotonic() - started >= 1.5  # not at once: when its 2 s were up
    with httpx.Client(timeout=10) as client:  # keep-alive clients that do send are served
        assert [client.get(f"{url}/health").status_code for _ in range(3)] == [200] * 3


def test_repeated_log_lines_are_rate_limited() -> None:
    burst = 50
    now = [0.0]
    limiter = RateLimiter(burst=burst, window=60.0, clock=lambda: now[0])
    taken = [limiter.admit("asyncio", 40, "socket.accept() out of system resource")[0]
             for _ in range(10_000)]  # fmt: skip
    assert sum(taken) == burst
    assert limiter.admit("other", 20, "another line") == (True, 0)  # per template
    now[0] = 61.0
    assert limiter.admit("asyncio", 40, "socket.accept() out of system resource") == (
        True,
        10_000 - burst,
    )  # the first line of the next window says how many were dropped
