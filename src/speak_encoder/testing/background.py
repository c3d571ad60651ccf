"""One way to run a test server on a background thread, whatever serves it.

Every server of this package is a :class:`BackgroundServer`: the reference gateway and embed
server (uvicorn, :mod:`speak_encoder.testing.serving`), the fake pin services and the Kubo fault
proxy (:mod:`http.server`, :class:`HTTPServerInThread`) and the fault server (asyncio streams,
:mod:`speak_encoder.testing.http_faults`). A subclass says how to serve —
:meth:`_serve_in_thread`, run in the thread, calls ``ready()`` once connections are accepted —
and how to ask it to stop — :meth:`_request_stop`, from any thread. :meth:`start` (returns
once the server accepts, or raises), :meth:`stop` (joins the thread), ``with server: …`` and
the timeouts live here.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable
from types import TracebackType
from typing import ClassVar, Final, Self

#: Seconds :meth:`BackgroundServer.start` waits for the server to accept connections.
START_TIMEOUT_S: Final = 10.0
#: Seconds :meth:`BackgroundServer.stop` waits for the serving thread.
STOP_TIMEOUT_S: Final = 10.0


class BackgroundServer:
    """A server on a daemon thread (see the module docstring)."""

    thread_name: ClassVar[str] = "test-server"

    def __init__(self) -> None:
        self._bg_thread: threading.Thread | None = None
        self._bg_ready = threading.Event()
        self._bg_accepting = False
        self._bg_error: BaseException | None = None

    # --- what a subclass says ----------------------------------------------------------------

    def _serve_in_thread(self, ready: Callable[[], None]) -> None:
        """Serve until asked to stop (in the background thread); call ``ready()`` once."""
        raise NotImplementedError

    def _request_stop(self) -> None:
        """Ask :meth:`_serve_in_thread` to return (from another thread)."""
        raise NotImplementedError

    def _after_stop(self) -> None:
        """After the serving thread ended (release sockets …)."""

    # --- the lifecycle -----------------------------------------------------------------------

    def _bg_mark_ready(self) -> None:
        self._bg_accepting = True
        self._bg_ready.set()

    def _bg_run(self) -> None:
        try:
            self._serve_in_thread(self._bg_mark_ready)
        except BaseException as exc:  # reported by start()
            self._bg_error = exc
        finally:
            self._bg_ready.set()  # start() stops waiting even when serving failed first

    def start(self) -> Self:
        """Serve on a background thread; returns once the server accepts connections."""
        if self._bg_thread is not None:
            return self
        self._bg_ready.clear()
        self._bg_accepting, self._bg_error = False, None
        self._bg_thread = threading.Thread(target=self._bg_run, name=self.thread_name, daemon=True)
        self._bg_thread.start()
        if not self._bg_ready.wait(START_TIMEOUT_S) or not self._bg_accepting:
            error = self._bg_error
            self.stop()
            raise RuntimeError(f"the {self.thread_name} failed to start") from error
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread (a no-op when not started)."""
        thread, self._bg_thread = self._bg_thread, None
        if thread is None:
            return
        self._request_stop()
        thread.join(timeout=STOP_TIMEOUT_S)
        self._after_stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class HTTPServerInThread(BackgroundServer):
    """A :mod:`socketserver` server (``self.httpd``, bound by the subclass: its URL is known at
    once) served on a background thread."""

    httpd: socketserver.TCPServer

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def _serve_in_thread(self, ready: Callable[[], None]) -> None:
        ready()  # bound and listening since __init__: connections queue until served
        self.httpd.serve_forever(poll_interval=0.1)

    def _request_stop(self) -> None:
        self.httpd.shutdown()

    def _after_stop(self) -> None:
        self.httpd.server_close()


__all__ = ["START_TIMEOUT_S", "STOP_TIMEOUT_S", "BackgroundServer", "HTTPServerInThread"]
