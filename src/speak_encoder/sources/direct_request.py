"""A direct job request (docs/protocols.md §4) and what the node makes of it (pure, no I/O).

Used by the Direct API (``POST /encode``) and by the embed gateway poller (``myJob`` hands out
the same request). :func:`to_new_job` applies the rendition policy:

=====================  ===========================================================
request                renditions
=====================  ===========================================================
``short: true``        480p only, the first 60 s (``short`` wins over ``premium``)
``premium: true``      the full ladder
neither                ``STANDARD_RUNGS`` (480p by default: upstream's policy)
=====================  ===========================================================

The job's source is ``ipfs://<bare CID>`` whatever form ``input_cid`` had; the stored request
keeps ``input_cid`` as submitted (the completion webhook echoes it) and ``api_key`` (the
webhook sends it back as ``X-API-Key``) — the key is never shown in a response or a log.

Also here: the upstream words for our job states (:func:`wire_status`) and one overall
progress figure 0..100 across the stages (:func:`overall_progress`), shared by ``GET /job`` and
the progress webhooks.

==============  ===============================  =========================================
our state       stage                            upstream word (``status``)
==============  ===============================  =========================================
queued          –                                ``queued``
retry_wait      –                                ``queued`` (waiting for another attempt)
running         fetch                            ``downloading``
running         publish                          ``uploading``
running         probe, plan, encode, verify,     ``running``
                report
complete        –                                ``complete``
failed          –                                ``failed``
cancelled       –                                ``cancelled``
==============  ===============================  =========================================
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
)

from speak_encoder.config import Settings
from speak_encoder.errors import InvalidSourceReference
from speak_encoder.node.models import Job, JobState, NewJob, SourceKind, Stage
from speak_encoder.pipeline.source import normalize_cid_reference

#: The rung a short gets.
SHORT_RUNGS: tuple[str, ...] = ("480p",)
#: Longest owner / permlink / other free-text field accepted.
MAX_NAME = 256
MAX_TEXT = 1024
#: Longest ``api_key`` (it is stored and sent back).
MAX_API_KEY = 1024
#: Longest error text put in a response or a webhook.
MAX_ERROR = 1000

# Control characters (C0, DEL, C1) are refused in every text field: they have no place in
# names and PostgreSQL cannot store NUL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _clean_text(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _header_safe(value: str) -> str:
    if not all(0x20 <= ord(c) <= 0x7E for c in value):
        raise ValueError("must be printable ASCII (it is sent back as an HTTP header)")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Name = Annotated[
    str,
    Field(min_length=1, max_length=MAX_NAME),
    AfterValidator(_clean_text),
    AfterValidator(_not_blank),
]
Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_clean_text)]


class DirectJobRequest(BaseModel):
    """The body of ``POST /encode`` (docs/protocols.md §4). Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    owner: Name = Field(description="Hive account of the video owner", examples=["alice"])
    permlink: Name = Field(description="The video's permlink", examples=["my-video"])
    input_cid: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)] = Field(
        description="Qm… | bafy… | ipfs://… | https://gw/ipfs/… (reduced to the bare CID)",
        examples=["QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"],
    )
    short: StrictBool = Field(description="true: 480p only, the first 60 seconds")
    premium: StrictBool | None = Field(default=None, description="true: the full ladder")
    webhook_url: Annotated[str, Field(min_length=1, max_length=2048)] = Field(
        description="Where completion, failure and progress are POSTed",
        examples=["https://example.com/hook"],
    )
    api_key: Annotated[
        str,
        Field(min_length=1, max_length=MAX_API_KEY),
        AfterValidator(_header_safe),
        AfterValidator(_not_blank),
    ] = Field(description="Sent back to the webhook as X-API-Key")
    frontend_app: Text | None = None
    originalFilename: Text | None = None
    duration: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @field_validator("input_cid")
    @classmethod
    def _valid_cid(cls, value: str) -> str:
        _clean_text(value)
        try:
            normalize_cid_reference(value)
        except InvalidSourceReference as exc:
            raise ValueError(exc.message) from None
        return value  # kept as submitted; bare_cid() reduces it

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        _clean_text(value)
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value

    def bare_cid(self) -> str:
        return normalize_cid_reference(self.input_cid)

    def dedup_key(self) -> str:
        return f"{self.owner}/{self.permlink}/{self.bare_cid()}"

    def report_target(self) -> dict[str, str]:
        """Where this request wants the job's reports to go (the newest offer wins)."""
        return {"webhook_url": self.webhook_url, "api_key": self.api_key}

    def stored(self) -> dict[str, Any]:
        """The request as the job keeps it (``api_key`` included: the webhook needs it)."""
        return self.model_dump(exclude_none=True)


#: How each outcome of an offer is logged (see ``JobStore.offer``).
OFFER_LOG: dict[str, str] = {
    "created": "queued",
    "duplicate": "submitted again (duplicate): unchanged",
    "retargeted": "submitted again: its reports now go to the new webhook_url/api_key",
    "reopened": "submitted again after it completed: it reports once more",
}


def public_error(text: str, settings: Settings) -> str:
    """An error message fit for a response or a webhook: the node's folders are elided."""
    folders = {str(settings.work_dir), str(settings.data_dir)}
    if settings.temp_dir is not None:
        folders.add(str(settings.temp_dir))
    for folder in sorted(folders, key=len, reverse=True):
        if len(folder) > 1:
            text = text.replace(folder, "…")
    return text[:MAX_ERROR]


def standard_rungs(settings: Settings) -> tuple[str, ...]:
    return tuple(r for r in settings.standard_rungs.split(",") if r) or SHORT_RUNGS


def to_new_job(
    req: DirectJobRequest, settings: Settings, kind: SourceKind = SourceKind.DIRECT
) -> NewJob:
    """The job for ``req`` (rendition policy in the module docstring)."""
    rungs: tuple[str, ...] | None
    if req.short:
        rungs = SHORT_RUNGS
    elif req.premium:
        rungs = None
    else:
        rungs = standard_rungs(settings)
    return NewJob(
        source=f"ipfs://{req.bare_cid()}",
        kind=kind,
        short=req.short,
        rungs=rungs,
        request=req.stored(),
        dedup_key=req.dedup_key(),
    )


# --- how a job looks from outside -------------------------------------------------------

#: Share of the whole job each stage stands for (sums to 100).
STAGE_WEIGHTS: dict[Stage, float] = {
    Stage.FETCH: 10.0,
    Stage.PROBE: 1.0,
    Stage.PLAN: 1.0,
    Stage.ENCODE: 72.0,
    Stage.VERIFY: 4.0,
    Stage.PUBLISH: 11.0,
    Stage.REPORT: 1.0,
}

#: The ``stage`` word of a progress webhook for each of our stages.
WIRE_STAGES: dict[Stage, str] = {
    Stage.FETCH: "download",
    Stage.PROBE: "probe",
    Stage.PLAN: "plan",
    Stage.ENCODE: "encode",
    Stage.VERIFY: "verify",
    Stage.PUBLISH: "upload",
    Stage.REPORT: "report",
}


def overall_progress(stage: Stage | None, fraction: float) -> int:
    """0..100 for a job in ``stage`` with ``fraction`` (0..1) of that stage done."""
    if stage is None:
        return 0
    if not math.isfinite(fraction):
        fraction = 0.0
    fraction = min(max(fraction, 0.0), 1.0)
    done = 0.0
    for s, weight in STAGE_WEIGHTS.items():
        if s is stage:
            done += weight * fraction
            break
        done += weight
    return min(99, max(0, int(done)))  # 100 only when complete


def job_progress(job: Job) -> int:
    if job.state is JobState.COMPLETE:
        return 100
    if job.state is not JobState.RUNNING:
        return 0
    fraction = job.progress.get(job.stage.value, 0.0) if job.stage else 0.0
    return overall_progress(job.stage, float(fraction))


def wire_status(job: Job) -> str:
    """The upstream word for ``job``'s state (table in the module docstring)."""
    if job.state is JobState.RUNNING:
        if job.stage is Stage.FETCH:
            return "downloading"
        if job.stage is Stage.PUBLISH:
            return "uploading"
        return "running"
    if job.state is JobState.RETRY_WAIT:
        return "queued"
    return job.state.value


__all__ = [
    "SHORT_RUNGS",
    "STAGE_WEIGHTS",
    "WIRE_STAGES",
    "DirectJobRequest",
    "job_progress",
    "overall_progress",
    "public_error",
    "standard_rungs",
    "to_new_job",
    "wire_status",
]
