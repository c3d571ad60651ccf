"""Browser tests of the dashboard: a live node (Service + operator server) and headless Chromium.

* :class:`LiveNode` — a real :class:`~speak_encoder.service.Service` (SQLite job store,
  scheduler running real ffmpeg encodes, memory/disk monitor) with the operator app and the
  dashboard routes served over real HTTP on ``127.0.0.1:<free port>``, all in one event loop
  of a background thread (``Service.serve`` itself installs signal handlers, which only the
  main thread may do; the parts it starts are started here the same way).
* ``chrome`` — Debian's ``chromium`` through ``chromedriver`` (Selenium), headless, with a fresh
  profile. Missing pieces FAIL the test naming ``scripts/install-test-deps.sh`` (never skip).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from speak_encoder.config import Settings
from speak_encoder.logs import RingBufferHandler
from speak_encoder.node.models import Job, JobState, NewJob
from speak_encoder.service import Service
from speak_encoder.web.app import bind_web_socket, create_web_app, serve_web
from speak_encoder.web.dashboard import Dashboard

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = (
    "run scripts/install-test-deps.sh (installs Debian's chromium, chromium-driver and selenium)"
)
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
    "--window-size=1280,1600",
)
OUTPUT_DIR = Path(__file__).resolve().parents[2] / "test-output"


class LiveNode:
    """A running node service with the dashboard on ``url`` (see the module docstring)."""

    def __init__(self, settings: Settings, ring: RingBufferHandler) -> None:
        self.settings = settings
        self.ring = ring
        self.service = Service(settings)
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="live-node", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        sock = bind_web_socket("127.0.0.1", 0)
        self.port = int(sock.getsockname()[1])
        self._sock = sock

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start()/stop()
            self._error = exc
            self._ready.set()
        finally:
            self._close_loop()

    def _close_loop(self) -> None:
        """What ``asyncio.run`` does at its end: what is still running is cancelled and awaited
        (a job's ffmpeg stopped and reaped), then the loop is closed."""
        loop = self.loop
        try:
            left = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    async def _serve(self) -> None:
        service = self.service
        self._stop = asyncio.Event()
        await asyncio.to_thread(service.startup)
        service.monitor.check_interval = 1.0
        await asyncio.to_thread(service.monitor.check)
        dashboard = Dashboard(service, ring=self.ring, stopping=self._stop.is_set, interval=0.5)
        app = create_web_app(
            service,
            stopping=self._stop.is_set,
            routes=dashboard.routes,
            lifespan=dashboard.lifespan,
        )
        helpers = [
            asyncio.ensure_future(service.monitor.run()),
            asyncio.ensure_future(serve_web(app, stop=asyncio.Event(), sock=self._sock)),
        ]
        service.ready = True
        self._ready.set()
        try:
            await service.scheduler.run(self._stop)
        finally:
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            service.store.close()

    def start(self) -> LiveNode:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the live node did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self.service.scheduler.cancel_all_now()
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def submit(self, source: str, **fields: Any) -> str:
        job, _ = self.service.store.submit(NewJob(source=source, **fields), queue_max=100)
        self.loop.call_soon_threadsafe(self.service.scheduler.wake)
        return job.id

    def job(self, job_id: str) -> Job:
        return self.service.store.require(job_id)

    def wait_for(self, job_id: str, states: set[JobState], timeout: float = 60.0) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.state in states:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} stayed {job.state} (wanted {states})")
            time.sleep(0.1)

    def wait_until(self, check: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or check}")
            time.sleep(0.1)


@pytest.fixture
def live_ring() -> Iterator[RingBufferHandler]:
    """A ring buffer on the package's logger (what setup_logging installs in `run`)."""
    ring = RingBufferHandler(capacity=1000)
    logger = logging.getLogger("speak_encoder")
    level = logger.level
    logger.addHandler(ring)
    logger.setLevel(logging.INFO)
    yield ring
    logger.removeHandler(ring)
    logger.setLevel(level)


@pytest.fixture
def live_node(tmp_path: Path, live_ring: RingBufferHandler) -> Iterator[Callable[..., LiveNode]]:
    """``live_node(**settings)`` → a started :class:`LiveNode` (stopped after the test)."""
    nodes: list[LiveNode] = []

    def make(**fields: Any) -> LiveNode:
        values: dict[str, Any] = {
            "data_dir": tmp_path / f"node{len(nodes)}",
            "node_name": "dashboard-node",
            "publish_targets": "",
            "ipfs_api_addr": "",
            "hardware_acceleration": False,
            "encoder_preset": "ultrafast",
            "shutdown_grace": 0,
            **fields,
        }
        node = LiveNode(Settings(**values), live_ring)
        nodes.append(node)
        return node.start()

    yield make
    for node in nodes:
        node.stop()


@pytest.fixture
def chrome(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium (Selenium WebDriver) with a fresh profile and the browser log on."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: {INSTALL_HINT}", pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as DriverService
    except ImportError:
        pytest.fail(f"selenium is not installed: {INSTALL_HINT}", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str) -> Path:
    """Save the page as ``test-output/<name>.png`` (gitignored)."""
    OUTPUT_DIR.mkdir(exist_ok=True)
    path = OUTPUT_DIR / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
