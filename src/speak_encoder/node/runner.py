"""Running one job: the stages in order, each skipped when its checkpoint is still valid.

Checkpoints (``store.save_checkpoint``) and what makes them valid on resume:

========  ==============================================  ===================================
stage     checkpoint data                                 valid when
========  ==============================================  ===================================
fetch     source path, size, sha256, origin               the file is there with that size
                                                          (downloads: only on the node that
                                                          made them)
probe     a summary of the media                          recomputed (ffprobe reads headers)
plan      the renditions                                  recomputed (a pure function)
encode    the encoder used                                ``<job>/out/manifest.m3u8`` exists
                                                          on the node that encoded
verify    root CID, renditions, local store path          the stored folder exists there
publish   CID, per-target outcome, renditions             always (the data is on IPFS)
report    none: the completion and its report are stored  (always runs again: a pure function)
          in one transaction when the job ends
========  ==============================================  ===================================

The first stage without a valid checkpoint runs, and every later checkpoint is dropped (it
depended on the redone work). A fleet node resuming another node's job therefore restarts at
fetch unless the job was already published (then only ``report`` runs): work folders and the
local store are node-local; IPFS is the only shared storage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speak_encoder import proc
from speak_encoder.config import Settings
from speak_encoder.node import children
from speak_encoder.node.activity import Activity
from speak_encoder.node.hooks import SourceHooks
from speak_encoder.node.metrics import REGISTRY
from speak_encoder.node.models import STAGES, Checkpoint, Job, OutboxEntry, SourceKind, Stage
from speak_encoder.node.store import JobStore
from speak_encoder.private_files import make_work_dir
from speak_encoder.urlguard import UrlGuard

if TYPE_CHECKING:
    from speak_encoder.pipeline.fetch import FetchProgress
    from speak_encoder.pipeline.ffmpeg_run import EncodeProgress
    from speak_encoder.pipeline.plan import EncodePlan
    from speak_encoder.pipeline.probe import MediaInfo

# The encoding pipeline (httpx, the HLS tools, the storage targets) is imported by the stages
# when the first job runs: an idle node stays small.

log = logging.getLogger(__name__)

#: Test-only fault injection: pause this many seconds after the named stage's checkpoint is
#: written (``SPEAK_ENCODER_TEST_PAUSE_AFTER=fetch``), so a test can kill -9 the node exactly at
#: a stage boundary. Never set in production.
PAUSE_AFTER_ENV = "SPEAK_ENCODER_TEST_PAUSE_AFTER"
PAUSE_SECONDS_ENV = "SPEAK_ENCODER_TEST_PAUSE_SECONDS"
#: Name of the encoder's output folder inside a job's work folder.
OUT_DIR_NAME = "out"


@dataclass
class Work:
    """What the stages hand to each other within one run."""

    source: Path | None = None
    info: MediaInfo | None = None
    plan: EncodePlan | None = None
    out_dir: Path | None = None
    cid: str | None = None
    stored: Path | None = None
    renditions: list[dict[str, Any]] = field(default_factory=list)
    duration: float = 0.0
    published: dict[str, Any] | None = None
    encoder: str | None = None
    thumbnail: str | None = None  # poster file name in the folder, if one was made
    report: OutboxEntry | None = None  # the completion report (stored with the completion)


@dataclass
class JobRun:
    """Everything one job's stages need."""

    job: Job
    settings: Settings
    store: JobStore
    node: str
    job_dir: Path
    activity: Activity
    hooks: Mapping[SourceKind, SourceHooks]
    work: Work = field(default_factory=Work)

    async def db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)


def job_dir_for(settings: Settings, job_id: str) -> Path:
    return settings.work_dir / job_id


# --- the stages ---------------------------------------------------------------------------


#: Name of the master playlist (``pipeline.ffmpeg.MASTER_NAME``, kept here to stay lazy).
MASTER_NAME = "manifest.m3u8"


async def _fetch(run: JobRun) -> dict[str, Any]:
    from speak_encoder.pipeline.fetch import fetch_source
    from speak_encoder.pipeline.source import parse_source

    ref = parse_source(run.job.source)
    started = time.monotonic()

    moved = [0]

    def progress(p: FetchProgress) -> None:
        REGISTRY.add_fetched_bytes(max(0, p.done_bytes - moved[0]), ref.kind)
        moved[0] = p.done_bytes
        rate = p.done_bytes / max(time.monotonic() - started, 1e-6)
        fraction = p.done_bytes / p.total_bytes if p.total_bytes else None
        run.activity.beat(
            fraction, detail=f"{p.done_bytes / 1e6:.1f} MB", speed=f"{rate / 1e6:.1f} MB/s"
        )

    # A remote job's URLs are a stranger's: every hop checked and pinned (pipeline.fetch).
    guard = None if run.job.kind is SourceKind.LOCAL else UrlGuard.from_settings(run.settings)
    fetched = await fetch_source(ref, run.job_dir, run.settings, on_progress=progress, guard=guard)
    run.work.source = fetched.path
    return {
        "path": str(fetched.path),
        "size": fetched.size,
        "sha256": fetched.sha256,
        "origin": fetched.origin,
        "local_file": ref.kind == "file",
    }


async def _probe(run: JobRun) -> dict[str, Any]:
    from speak_encoder.pipeline.encode_job import describe_media
    from speak_encoder.pipeline.probe import ProbeLimits, probe

    assert run.work.source is not None
    limits = ProbeLimits.from_settings(run.settings)
    info = await probe(run.work.source, ffprobe=run.settings.ffprobe_path, limits=limits)
    run.work.info = info
    return {"summary": describe_media(info), "duration": info.duration}


async def _plan(run: JobRun) -> dict[str, Any]:
    from speak_encoder.pipeline.ladder import load_ladder
    from speak_encoder.pipeline.plan import EncodeOptions, plan_encode

    assert run.work.info is not None
    options = EncodeOptions(
        short=run.job.short, rungs=run.job.rungs, extras=run.settings.output_extras
    )
    plan = plan_encode(run.work.info, options, load_ladder(run.settings.ladder_file))
    run.work.plan = plan
    return {
        "renditions": [[r.name, r.width, r.height] for r in plan.renditions],
        "fps": str(plan.fps),
        "segment_seconds": plan.segment_seconds,
        "duration": plan.duration,
    }


async def _encode(run: JobRun) -> dict[str, Any]:
    from speak_encoder.pipeline.encode_job import encode_ladder

    assert run.work.plan is not None and run.work.source is not None
    out_dir = run.job_dir / OUT_DIR_NAME
    if out_dir.exists():
        await asyncio.to_thread(shutil.rmtree, out_dir)  # a partial encode of a dead run

    def progress(p: EncodeProgress) -> None:
        speed = f"{p.speed:.2f}x" if p.speed else None
        run.activity.beat(p.fraction, speed=speed, eta_seconds=p.eta_seconds)

    began = time.monotonic()
    encoder = await encode_ladder(
        run.work.plan, run.work.source, out_dir, run.settings, on_progress=progress
    )
    REGISTRY.observe_encode(run.work.plan.duration, time.monotonic() - began, encoder)
    run.work.out_dir = out_dir
    run.work.encoder = encoder
    return {"encoder": encoder}


async def _verify(run: JobRun) -> dict[str, Any]:
    from speak_encoder.pipeline.encode_job import poster_of, renditions_of, root_cid, verify_ladder
    from speak_encoder.storage.local_store import keep_folder

    assert run.work.plan is not None and run.work.out_dir is not None
    validation = await verify_ladder(run.work.out_dir, run.work.plan, run.settings)
    run.activity.beat(0.5, detail="computing the root CID")
    cid = await root_cid(run.work.out_dir)
    stored = await asyncio.to_thread(keep_folder, run.work.out_dir, run.settings, cid=cid)
    run.work.cid, run.work.stored = cid, stored.path
    run.work.renditions = [asdict(r) for r in renditions_of(validation)]
    run.work.duration = run.work.plan.duration
    run.work.thumbnail = poster_of(stored.path)
    return {
        "cid": cid,
        "stored": str(stored.path),
        "renditions": run.work.renditions,
        "duration": run.work.duration,
        "thumbnail": run.work.thumbnail,
    }


async def _publish(run: JobRun) -> dict[str, Any]:
    from speak_encoder.storage.targets import publish_folder

    assert run.work.cid is not None and run.work.stored is not None
    published: dict[str, Any] | None = None
    if run.settings.publish_targets:
        sent: dict[str, int] = {}

        def progress(target: str, done: int, total: int) -> None:
            REGISTRY.add_published_bytes(max(0, done - sent.get(target, 0)), target)
            sent[target] = done
            run.activity.beat(done / total if total else None, detail=f"uploading to {target}")

        result = await publish_folder(
            run.work.stored,
            run.settings,
            expected_cid=run.work.cid,
            queue=run.store.pin_queue(run.settings),
            on_progress=progress,
        )
        published = result.as_dict()
    run.work.published = published
    return {
        "cid": run.work.cid,
        "targets": published,
        "renditions": run.work.renditions,
        "duration": run.work.duration,
        "generation": run.job.generation,
        "thumbnail": run.work.thumbnail,
    }


async def _still_held(run: JobRun) -> bool:
    """A reopened job (offered again after it completed): is its output still there?

    With publish targets: the CID is pinned again by reference (cheap where it still is) and
    verified on every target; where that does not meet ``PUBLISH_REQUIRED`` the folder is
    uploaded again from the local store. Without targets: the local store must hold it.
    ``False`` means the output is gone: the job runs again from the start.
    """
    from speak_encoder.errors import PublishIncomplete
    from speak_encoder.storage.local_store import stored_path
    from speak_encoder.storage.targets import publish_folder

    assert run.work.cid is not None
    stored = stored_path(run.settings, run.work.cid)
    held = await asyncio.to_thread(lambda: (stored / MASTER_NAME).is_file())
    if not run.settings.publish_targets:
        return held
    queue = run.store.pin_queue(run.settings)
    folders: list[Path | None] = [None, stored] if held else [None]
    for folder in folders:
        try:
            result = await publish_folder(
                folder, run.settings, expected_cid=run.work.cid, queue=queue
            )
        except PublishIncomplete as exc:
            log.warning("job %s: output %s not held as required (%s)", run.job.id,
                        run.work.cid, exc.message)  # fmt: skip
            continue
        run.work.published = result.as_dict()
        return True
    return False


async def _report(run: JobRun) -> dict[str, Any]:
    """Build the completion report; the scheduler stores it with the completion."""
    hooks = run.hooks.get(run.job.kind)
    run.work.report = (
        None if hooks is None else hooks.completion_report(run.job, result_of(run.work))
    )
    return {}


STAGE_FUNCTIONS: dict[Stage, Callable[[JobRun], Awaitable[dict[str, Any]]]] = {
    Stage.FETCH: _fetch,
    Stage.PROBE: _probe,
    Stage.PLAN: _plan,
    Stage.ENCODE: _encode,
    Stage.VERIFY: _verify,
    Stage.PUBLISH: _publish,
    Stage.REPORT: _report,
}


def result_of(work: Work) -> dict[str, Any]:
    """The job's public result: CID and renditions, never a local path."""
    return {
        "cid": work.cid,
        "manifest": f"ipfs://{work.cid}/{MASTER_NAME}" if work.cid else None,
        "renditions": work.renditions,
        "qualities_encoded": [r["name"] for r in work.renditions],
        "duration": work.duration,
        "published": work.published,
        "thumbnail": f"ipfs://{work.cid}/{work.thumbnail}" if work.cid and work.thumbnail else None,
    }


# --- resuming -----------------------------------------------------------------------------


async def _restore(run: JobRun, stage: Stage, checkpoint: Checkpoint) -> bool:
    """Take a finished stage's outputs back into ``run.work``; False if no longer valid."""
    data, mine = checkpoint.data, checkpoint.node == run.node
    if stage is Stage.FETCH:
        path = Path(str(data.get("path", "")))
        usable = (mine or bool(data.get("local_file"))) and path.is_file()
        if not usable or path.stat().st_size != data.get("size"):
            return False
        run.work.source = path
        return True
    if stage in (Stage.PROBE, Stage.PLAN):
        await STAGE_FUNCTIONS[stage](run)  # cheap and deterministic: recompute
        return True
    if stage is Stage.ENCODE:
        out_dir = run.job_dir / OUT_DIR_NAME
        if not (mine and (out_dir / MASTER_NAME).is_file()):
            return False
        run.work.out_dir, run.work.encoder = out_dir, str(data.get("encoder"))
        return True
    if stage is Stage.VERIFY:
        stored = Path(str(data.get("stored", "")))
        if not (mine and (stored / MASTER_NAME).is_file()):
            return False
        _restore_result(run.work, data)
        run.work.stored = stored
        return True
    if stage is Stage.PUBLISH:
        _restore_result(run.work, data)
        run.work.published = data.get("targets")
        return True
    return True  # report: done is done


def _restore_result(work: Work, data: dict[str, Any]) -> None:
    work.cid = str(data["cid"])
    work.renditions = list(data.get("renditions") or [])
    work.duration = float(data.get("duration") or 0.0)
    work.thumbnail = data.get("thumbnail") or None


async def _resume_point(run: JobRun, checkpoints: dict[Stage, Checkpoint]) -> int:
    """Index of the first stage to run; what it needs is restored into ``run.work``.

    The latest self-contained checkpoint wins: a published job only reports, a verified one
    (its folder in the local store) only publishes; before that, stages are walked forward
    because each needs the previous one's outputs (the encode needs the source and the plan).
    """
    published = checkpoints.get(Stage.PUBLISH)
    if published is not None:
        await _restore(run, Stage.PUBLISH, published)
        if int(published.data.get("generation") or 0) < run.job.generation:
            if not await _still_held(run):
                log.warning("job %s: its output %s is gone: encoding it again", run.job.id,
                            run.work.cid)  # fmt: skip
                run.work = Work()
                return 0
            await run.db(
                run.store.save_checkpoint, run.job.id, Stage.PUBLISH,
                {**published.data, "generation": run.job.generation,
                 "targets": run.work.published}, node=run.node,
            )  # fmt: skip
        return STAGES.index(Stage.REPORT)
    verified = checkpoints.get(Stage.VERIFY)
    if verified is not None and await _restore(run, Stage.VERIFY, verified):
        return STAGES.index(Stage.PUBLISH)
    for index, stage in enumerate(STAGES[: STAGES.index(Stage.VERIFY)]):
        checkpoint = checkpoints.get(stage)
        if checkpoint is None or not await _restore(run, stage, checkpoint):
            return index
    return STAGES.index(Stage.VERIFY)


def _test_pause(stage: Stage) -> float:
    if os.environ.get(PAUSE_AFTER_ENV) == stage.value:
        return float(os.environ.get(PAUSE_SECONDS_ENV, "30"))
    return 0.0


async def run_job(run: JobRun) -> dict[str, Any]:
    """Run (or resume) every stage of ``run.job``; returns its public result."""
    await asyncio.to_thread(make_work_dir, run.job_dir, resume=True)
    proc.on_spawn.set(children.recorder(run.job_dir))  # this task's children are recorded
    checkpoints: dict[Stage, Checkpoint] = await run.db(run.store.checkpoints, run.job.id)
    start = await _resume_point(run, checkpoints)
    stale = [s for s in STAGES[start:] if s in checkpoints]
    if stale:
        await run.db(run.store.clear_checkpoints, run.job.id, stale)
    if start:
        log.info(
            "job %s resumes at %s",
            run.job.id,
            STAGES[start].value if start < len(STAGES) else "end",
        )
    for stage in STAGES[start:]:
        run.activity.enter(stage)
        await run.db(run.store.set_stage, run.job.id, run.node, stage)
        began = time.monotonic()
        data = await STAGE_FUNCTIONS[stage](run)
        REGISTRY.observe_stage(stage.value, time.monotonic() - began)
        if stage is not Stage.REPORT:  # the completion itself records that one
            await run.db(run.store.save_checkpoint, run.job.id, stage, data, node=run.node)
        run.activity.beat(1.0)
        pause = _test_pause(stage)
        if pause:
            log.warning("test hook: pausing %.0f s after %s", pause, stage.value)
            await asyncio.sleep(pause)
    return result_of(run.work)


__all__ = [
    "JobRun",
    "Work",
    "job_dir_for",
    "result_of",
    "run_job",
]
