"""Sub-commands of the node: ``run``, ``submit`` and ``jobs list|show|retry|cancel``.

Each works on the job store of ``--data-dir`` (or ``DATABASE_URL``), so several nodes can run
side by side with their own folders. Heavy modules are imported inside the commands only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from speak_encoder.config import Settings
from speak_encoder.node.models import Job, JobState, NewJob


def _store(settings: Settings) -> Any:
    from speak_encoder.node.store import JobStore

    store = JobStore.from_settings(settings)
    store.migrate()
    return store


def _ago(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    seconds = max(0.0, time.time() - epoch)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _line(job: Job) -> str:
    stage = job.stage.value if job.stage else "-"
    fraction = job.progress.get(stage, 0.0) if job.stage else 0.0
    if job.state is JobState.COMPLETE:
        fraction = 1.0
    return (
        f"{job.id}  {job.state.value:<10} {stage:<8} {fraction * 100:5.1f}%  "
        f"try {job.attempts}  {_ago(job.created_at):>8}  {job.source[:60]}"
    )


def cmd_hardware(args: argparse.Namespace, settings: Settings) -> int:
    from speak_encoder.pipeline.encode_job import hardware_report

    if not settings.hardware_acceleration:
        print("HARDWARE_ACCELERATION=false: every job uses libx264")
        return 0
    report = asyncio.run(hardware_report(settings, redetect=args.redetect))
    if args.json:
        print(json.dumps({
            "ffmpeg_version": report.ffmpeg_version, "listed": list(report.listed),
            "candidates": list(report.candidates), "working": list(report.working),
            "broken": dict(report.broken), "detect_failures": dict(report.detect_failures),
            "best": report.best, "from_cache": report.from_cache,
        }))  # fmt: skip
    else:
        print(report.summary())
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from speak_encoder.logs import setup_from_settings
    from speak_encoder.node.lock import DataDirLock
    from speak_encoder.service import Service

    with DataDirLock(settings.data_dir):  # one node per data folder, released on any exit
        setup_from_settings(settings, verbose=args.verbose)
        service = Service(settings, redetect=args.redetect)
        return asyncio.run(service.serve())


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    from speak_encoder.pipeline.ladder import load_ladder
    from speak_encoder.pipeline.source import parse_source

    ref = parse_source(args.source)  # a bad SOURCE is refused now, not in the node
    size = (
        Path(ref.value).stat().st_size if ref.kind == "file" and Path(ref.value).is_file() else None
    )
    rungs: tuple[str, ...] | None = args.rungs
    if rungs:
        load_ladder(settings.ladder_file).select(list(rungs))
    store = _store(settings)
    try:
        job, created = store.submit(
            NewJob(
                source=ref.value if ref.kind == "file" else args.source,
                short=args.short,
                rungs=rungs,
                priority=args.priority,
                size_hint=size,
            ),
            queue_max=settings.queue_max,
        )
    finally:
        store.close()
    if args.json:
        print(json.dumps({"job_id": job.id, "state": job.state.value, "created": created}))
    else:
        print(job.id)
    return 0


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    try:
        action = args.action or "list"
        if action == "list":
            states = [JobState(s) for s in args.state] if args.state else None
            jobs = store.list_jobs(states=states, limit=args.limit)
            if args.json:
                print(json.dumps({"jobs": [j.to_json() for j in jobs], "counts": store.counts()}))
            else:
                counts = store.counts()
                print("  ".join(f"{k}: {v}" for k, v in counts.items()))
                for job in jobs:
                    print(_line(job))
            return 0
        if args.job_id is None:
            print(f"error: jobs {action} needs a JOB_ID", file=sys.stderr)
            return 2
        if action == "show":
            job = store.require(args.job_id)
        elif action == "retry":
            job = store.retry(args.job_id)
        else:
            job = store.request_cancel(args.job_id)
        if args.json:
            print(json.dumps(job.to_json()))
        else:
            print(_line(job))
            if job.error:
                print(f"  error: {job.error}")
            if job.result:
                print(f"  result: {json.dumps(job.result)}")
        return 0
    finally:
        store.close()


def _rungs(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one rung, e.g. 720p,480p")
    return names


def add_node_commands(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run the node service",
        description="Run the node: take jobs from the store and the configured job sources, "
        "encode, publish, report. SIGTERM/Ctrl-C stops gracefully (twice: at once).",
    )
    run.add_argument("--redetect", action="store_true", help="detect hardware encoders again")
    run.set_defaults(func=cmd_run)

    hardware = sub.add_parser(
        "hardware",
        help="show (or re-detect) the hardware encoders jobs will use",
        description="Which of h264_nvenc, h264_vaapi, h264_qsv this ffmpeg has, which devices "
        "exist, and which passed a real test encode through the production pipeline. Cached "
        "in DATA_DIR/hardware.json until ffmpeg or the devices change.",
    )
    hardware.add_argument("--redetect", action="store_true", help="ignore the cache")
    hardware.add_argument("--json", action="store_true")
    hardware.set_defaults(func=cmd_hardware)

    submit = sub.add_parser("submit", help="queue a job for the node (prints its id)")
    submit.add_argument("source", metavar="SOURCE")
    submit.add_argument("--short", action="store_true", help="480p only, first 60 s")
    group = submit.add_mutually_exclusive_group()
    group.add_argument("--premium", action="store_true", help="the full ladder (default)")
    group.add_argument("--rungs", type=_rungs, help="comma list of rungs")
    submit.add_argument("--priority", type=int, default=0, help="higher runs first")
    submit.add_argument("--json", action="store_true")
    submit.set_defaults(func=cmd_submit)

    jobs = sub.add_parser("jobs", help="list, show, retry or cancel jobs")
    jobs.add_argument("action", nargs="?", choices=["list", "show", "retry", "cancel"])
    jobs.add_argument("job_id", nargs="?", metavar="JOB_ID")
    jobs.add_argument("--state", action="append", choices=[s.value for s in JobState])
    jobs.add_argument("--limit", type=int, default=50)
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(func=cmd_jobs)


__all__ = ["add_node_commands"]
