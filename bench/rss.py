"""Run a command and sample its memory: the process itself and the sum of all its descendants.

Every ``interval`` seconds (default 50 ms) the sampler reads, with psutil, the RSS of the
started process and the RSS of each of its descendants (children, grandchildren, …). It keeps
the peak of the process itself, the peak of the descendants' *sum*, the peak of the largest
single descendant and the peak of the total (process + descendants, sampled at the same
instant), plus the wall time from start to exit.

RSS counts shared library pages once per process, so a sum over processes slightly
over-counts; a 50 ms sampler can miss a spike shorter than that. Both are fine for encoders
whose memory stays up for seconds.

No shell is involved: ``argv`` is an argument list. Output goes to temporary files (a pipe
could fill up and block the command while we sample) and is returned, truncated to
``max_output`` bytes each.

Usage::

    from rss import measure
    run = measure(["ffmpeg", "-i", "in.mp4", "out.mp4"])
    print(run.wall_seconds, run.peak_total_mb)
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

#: Figures are decimal megabytes (10^6 bytes), like the other benchmarks.
MB = 1_000_000
#: Seconds between two samples.
DEFAULT_INTERVAL_S = 0.05
#: Bytes of stdout/stderr kept in the result.
DEFAULT_MAX_OUTPUT = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RssRun:
    """Result of :func:`measure`. Byte counts; ``*_mb`` properties are MB (10^6 bytes)."""

    argv: list[str]
    returncode: int
    wall_seconds: float
    peak_self_bytes: int
    peak_children_bytes: int  # largest sum of all descendants at one sample
    peak_largest_child_bytes: int  # largest single descendant
    peak_total_bytes: int  # largest (self + descendants) at one sample
    samples: int
    #: CPU seconds (user + system) of the command and every descendant it waited for.
    cpu_seconds: float = 0.0
    #: CPU seconds used meanwhile by everything else on the machine (other jobs, the kernel):
    #: a noisy neighbour makes wall times meaningless, this shows when it happened.
    other_cpu_seconds: float = 0.0
    stdout: bytes = b""
    stderr: bytes = b""
    #: Peak RSS per descendant command name (e.g. {"ffmpeg": …, "ffprobe": …}).
    child_peaks: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def other_load(self) -> float:
        """Share of the machine's CPUs used by other processes during the run (0..1)."""
        capacity = self.wall_seconds * (os.cpu_count() or 1)
        return min(1.0, self.other_cpu_seconds / capacity) if capacity > 0 else 0.0

    @property
    def peak_self_mb(self) -> float:
        return self.peak_self_bytes / MB

    @property
    def peak_children_mb(self) -> float:
        return self.peak_children_bytes / MB

    @property
    def peak_largest_child_mb(self) -> float:
        return self.peak_largest_child_bytes / MB

    @property
    def peak_total_mb(self) -> float:
        return self.peak_total_bytes / MB


def _rss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_info().rss)
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return 0


def _name(proc: psutil.Process) -> str:
    try:
        return str(proc.name())
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return "?"


def measure(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    interval: float = DEFAULT_INTERVAL_S,
    timeout: float | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
) -> RssRun:
    """Run ``argv`` to completion while sampling memory; never raises on a failing command.

    On ``timeout`` the command's process group is killed and the return code is negative.
    A missing binary gives return code 127 and the error text in ``stderr``.
    """
    argv = [str(a) for a in argv]
    peak_self = peak_children = peak_largest = peak_total = samples = 0
    child_peaks: dict[str, int] = {}
    names: dict[int, str] = {}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # CPU time: the growth of RUSAGE_CHILDREN across the run (exact when runs are
        # sequential; a concurrent child of this process would be counted too).
        usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy_before = _machine_busy_seconds()
        started = time.monotonic()
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            return RssRun(argv, 127, 0.0, 0, 0, 0, 0, 0, stderr=str(exc).encode())
        try:
            root = psutil.Process(popen.pid)
            while popen.poll() is None:
                own = _rss(root)
                try:
                    kids = root.children(recursive=True)
                except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    kids = []
                kid_total = 0
                for kid in kids:
                    rss = _rss(kid)
                    kid_total += rss
                    peak_largest = max(peak_largest, rss)
                    name = names.setdefault(kid.pid, _name(kid))
                    child_peaks[name] = max(child_peaks.get(name, 0), rss)
                peak_self = max(peak_self, own)
                peak_children = max(peak_children, kid_total)
                peak_total = max(peak_total, own + kid_total)
                samples += 1
                if timeout is not None and time.monotonic() - started > timeout:
                    _kill_group(popen)
                    break
                time.sleep(interval)
        except psutil.NoSuchProcess:
            pass
        except BaseException:
            _kill_group(popen)
            raise
        returncode = popen.wait()
        wall = time.monotonic() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (usage.ru_utime - usage_before.ru_utime) + (usage.ru_stime - usage_before.ru_stime)
        other = max(0.0, _machine_busy_seconds() - busy_before - cpu)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(max_output), err.read(max_output)
    return RssRun(
        argv=argv,
        returncode=returncode,
        wall_seconds=wall,
        peak_self_bytes=peak_self,
        peak_children_bytes=peak_children,
        peak_largest_child_bytes=peak_largest,
        peak_total_bytes=peak_total,
        samples=samples,
        cpu_seconds=cpu,
        other_cpu_seconds=other,
        stdout=stdout,
        stderr=stderr,
        child_peaks=child_peaks,
    )


def own_peak_bytes() -> int:
    """This process's peak RSS since it started or since :func:`reset_own_peak` (``VmHWM``).

    Not ``getrusage``'s ``ru_maxrss``: it survives ``execve`` (a child reports the larger RSS of
    the parent it was forked from) and cannot be reset.
    """
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_own_peak() -> None:
    """Start :func:`own_peak_bytes` again from the current RSS (Linux ``clear_refs`` 5)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")


def _machine_busy_seconds() -> float:
    """CPU seconds all CPUs have spent not idle since boot."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return (
        float(sum(times)) - idle - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    )


def _kill_group(popen: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)
    popen.wait()


def main(argv: list[str] | None = None) -> int:
    """``python bench/rss.py CMD ARGS…``: run CMD and print its wall time and peak RSS."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python bench/rss.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    run = measure(args)
    sys.stdout.buffer.write(run.stdout)
    sys.stderr.buffer.write(run.stderr)
    sys.stderr.flush()
    if run.stderr and not run.stderr.endswith(b"\n"):
        print(file=sys.stderr)
    print(
        f"{Path(args[0]).name}: exit {run.returncode}, {run.wall_seconds:.2f} s, "
        f"peak RSS self {run.peak_self_mb:.0f} MB, descendants {run.peak_children_mb:.0f} MB, "
        f"total {run.peak_total_mb:.0f} MB, CPU {run.cpu_seconds:.1f} s, other processes "
        f"{run.other_load:.0%} of the machine ({run.samples} samples)",
        file=sys.stderr,
    )
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
