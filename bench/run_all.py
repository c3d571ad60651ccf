"""``make bench``: run every benchmark in ``bench/`` and print its table.

A benchmark is a module ``bench/<name>.py`` with ``main(argv: list[str] | None) -> int``.
They run one after the other in a fixed order (``ORDER`` first, then any other module
alphabetically), each with its default arguments. The exit code is non-zero when any of them
failed to run (returned non-zero or raised); timings are never judged here.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
#: Run first, in this order (a missing module is skipped).
ORDER = ("encode_ladder", "ipfs_bench")
#: Modules that are not benchmarks.
NOT_BENCHMARKS = frozenset({"run_all", "rss"})


def discover() -> list[str]:
    names = {p.stem for p in BENCH_DIR.glob("*.py")} - NOT_BENCHMARKS
    first = [n for n in ORDER if n in names]
    return first + sorted(names - set(first))


def run_one(name: str) -> tuple[int | None, float]:
    """Import ``name`` and run its ``main([])``: (exit code or None if no main, seconds)."""
    started = time.monotonic()
    try:
        module = importlib.import_module(name)
        main = getattr(module, "main", None)
        if not callable(main):
            return None, 0.0
        code = int(main([]) or 0)
    except KeyboardInterrupt:
        raise
    except BaseException:  # one broken benchmark must not hide the others
        traceback.print_exc()
        code = 1
    return code, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(BENCH_DIR))
    results: list[tuple[str, int, float]] = []
    for name in discover():
        print(f"\n=== {name} ===", flush=True)
        code, seconds = run_one(name)
        if code is None:
            print("(no main(): not a benchmark, skipped)")
            continue
        results.append((name, code, seconds))
    print("\n=== summary ===")
    for name, code, seconds in results:
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"{name:<20}{seconds:>8.0f} s  {status}")
    return 1 if any(code != 0 for _, code, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
