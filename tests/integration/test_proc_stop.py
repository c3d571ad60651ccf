"""A cancelled encode leaves nothing behind, even when it is cancelled again while stopping.

The node cancels a job's task (Ctrl-C, shutdown, a lost lease) and then may cancel it again
while ffmpeg is being stopped (SIGTERM, up to TERMINATE_GRACE_S for ffmpeg to finish its files).
A second cancel in that window used to skip the SIGKILL, the reaping and the end of the memory
watcher: a child still running, an open subprocess transport, and "Task was destroyed but it is
pending! watch_memory()" when the loop closed.
"""

from __future__ import annotations

import asyncio
import sys

import psutil
import pytest

from speak_encoder.pipeline.ffmpeg_run import EncodeProgress, run_ffmpeg

#: A stand-in for ffmpeg that reports progress once, then ignores SIGTERM and never ends.
STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "sys.stdout.write('out_time_us=100000\\nprogress=continue\\n'); sys.stdout.flush()\n"
    "time.sleep(120)\n"
)


def _inside(task: asyncio.Future[None], function: str) -> bool:
    """Whether ``task`` is suspended inside ``function`` (its coroutine chain)."""
    coro = task.get_coro() if isinstance(task, asyncio.Task) else None
    while coro is not None:
        frame = getattr(coro, "cr_frame", None)
        if frame is not None and frame.f_code.co_name == function:
            return True
        coro = getattr(coro, "cr_await", None)
    return False


async def _cancel_twice() -> tuple[list[str], list[int]]:
    started = asyncio.Event()

    def on_progress(_: EncodeProgress) -> None:
        started.set()

    me = psutil.Process()
    before = {p.pid for p in me.children()}  # (a session's IPFS node, PostgreSQL …)
    job = asyncio.ensure_future(
        run_ffmpeg(
            [sys.executable, "-c", STUBBORN],
            duration=10.0,
            on_progress=on_progress,
            memory_max_mb=100_000,  # the memory watcher runs
        )
    )
    await asyncio.wait_for(started.wait(), 30)
    (child,) = [p for p in me.children() if p.pid not in before]
    job.cancel()
    # Wait until the job is inside proc.stop (SIGTERM sent and ignored: the grace runs) …
    for _ in range(1000):
        await asyncio.sleep(0)
        if _inside(job, "stop"):
            break
    assert _inside(job, "stop") and child.is_running()
    job.cancel()  # … and cancel again there
    with pytest.raises(asyncio.CancelledError):
        await job
    pending = [repr(t.get_coro()) for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    alive = [
        p.pid for p in me.children() if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE
    ]
    return pending, alive


@pytest.mark.timeout(60)
def test_a_second_cancel_while_stopping_still_kills_reaps_and_ends_the_watcher() -> None:
    pending, alive = asyncio.run(_cancel_twice())
    assert pending == []
    assert alive == []
