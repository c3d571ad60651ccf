"""Pure parts of the node: retry decisions, bounded caches, the memory/disk monitor."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from speak_encoder.errors import MediaError, NetworkError, OutputInvalid, UpstreamError
from speak_encoder.node.cache import TTLCache
from speak_encoder.node.monitor import PAUSE_DISK, PAUSE_MEMORY, Monitor, sample
from speak_encoder.node.retry import Outcome, backoff_delay, decide


def test_permanent_errors_fail_at_once() -> None:
    for error in (MediaError("not media"), OutputInvalid("bad")):
        decision = decide(error, failures_so_far=0, max_attempts=5, base=30, cap=600)
        assert decision.outcome is Outcome.FAIL and "permanent" in decision.reason


def test_retryable_errors_retry_until_max_attempts() -> None:
    error = NetworkError("connection reset")
    outcomes = [
        decide(error, failures_so_far=n, max_attempts=5, base=30, cap=600).outcome for n in range(5)
    ]
    # failures 1..4 retry, the 5th failure is the last attempt
    assert outcomes == [Outcome.RETRY] * 4 + [Outcome.FAIL]
    last = decide(UpstreamError("502"), failures_so_far=4, max_attempts=5, base=30, cap=600)
    assert "after 5 attempts" in last.reason


def test_backoff_is_exponential_capped_and_jittered() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, base=10, cap=100, jitter=0.0) for n in range(1, 7)]
    assert delays == [10, 20, 40, 80, 100, 100]
    jittered = {round(backoff_delay(3, base=10, cap=100, rng=rng), 3) for _ in range(50)}
    assert len(jittered) > 40 and all(32 <= d <= 48 for d in jittered)


def test_ttl_cache_is_bounded_by_size_and_age() -> None:
    now = [0.0]
    cache: TTLCache[str, int] = TTLCache(max_entries=3, ttl=10, clock=lambda: now[0])
    for i in range(5):
        cache.put(f"k{i}", i)
    assert len(cache) == 3 and cache.get("k0") is None and cache.get("k4") == 4
    now[0] = 5
    cache.put("fresh", 9)
    now[0] = 12
    # "fresh" evicted the least recently used (k2); k3 and k4 (stored at t=0) expire
    assert cache.prune() == 2
    assert cache.get("fresh") == 9 and cache.values() == [9]
    now[0] = 16
    assert cache.get("fresh") is None  # expired on read too
    cache.put("a", 1)
    assert cache.prune(everything=True) == 1 and len(cache) == 0
    with pytest.raises(ValueError, match="max_entries"):
        TTLCache(max_entries=0, ttl=1)


def test_sample_measures_this_process(tmp_path: Path) -> None:
    now = sample(tmp_path)
    assert 10 < now.encoder_mb < 2000
    assert now.children_mb >= 0 and now.available_mb > 0 and now.disk_free_mb > 0


def _monitor(tmp_path: Path, events: list[str], **limits: float) -> Monitor:
    return Monitor(
        work_dir=tmp_path,
        warn_mb=limits.get("warn", 1e9),
        critical_mb=limits.get("critical", 1e9),
        disk_reserve_mb=limits.get("disk", 0),
        log_interval=0,
        pause=lambda reason: events.append(f"pause:{reason}"),
        resume=lambda reason: events.append(f"resume:{reason}"),
        pruners=[lambda: events.append("pruned") or 3],
        history_interval=0,
    )


def test_high_memory_warns_collects_and_prunes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[str] = []
    caplog.set_level(logging.INFO, logger="speak_encoder.node.monitor")
    _monitor(tmp_path, events, warn=1).check()
    text = caplog.text
    assert "🧠 Memory:" in text and "MB encoder +" in text and "MB ffmpeg" in text
    assert "⚠️ HIGH MEMORY" in text and "🗑️ freed" in text and "3 cache entries pruned" in text
    assert "pruned" in events and f"resume:{PAUSE_MEMORY}" in events


def test_critical_memory_pauses_intake_and_resumes(tmp_path: Path) -> None:
    events: list[str] = []
    monitor = _monitor(tmp_path, events, warn=1, critical=1)
    monitor.check()
    assert f"pause:{PAUSE_MEMORY}" in events
    monitor.critical_mb = 1e9
    monitor.check()
    assert events[-2:] == [f"resume:{PAUSE_MEMORY}", f"resume:{PAUSE_DISK}"]
    assert len(monitor.history) == 2


def test_low_disk_pauses_intake(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []
    _monitor(tmp_path, events, disk=1e12).check()
    assert f"pause:{PAUSE_DISK}" in events and "LOW DISK" in caplog.text
