"""What of a job leaves the node: :meth:`Job.to_json` minus local paths, errors redacted."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from speak_encoder.logs import redact
from speak_encoder.node.models import Job, JobState, SourceKind
from speak_encoder.storage.cid import is_cid


def public_source(job: Job) -> str:
    """The job's source without local paths: a local file shows as its name."""
    if job.kind is SourceKind.LOCAL and "://" not in job.source:
        return PurePosixPath(job.source).name
    return redact(job.source)


def public_job(job: Job, hide: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """:meth:`Job.to_json` minus local paths, errors redacted, owner/permlink when known.

    ``hide`` are ``(local path, shown as)`` pairs replaced in the error text (DATA_DIR …); a
    local job's own source path always shows as its file name.
    """
    data = job.to_json()
    data["source"] = public_source(job)
    if data["error"]:
        error = str(data["error"])
        if job.kind is SourceKind.LOCAL and job.source:
            error = error.replace(job.source, data["source"])
        for path, shown in hide:
            error = error.replace(path, shown)
        data["error"] = redact(error)
    result = job.result or {}
    data["result"] = (
        {k: result.get(k) for k in ("cid", "duration", "elapsed_seconds", "thumbnail")}
        if job.result
        else None
    )
    data["playable"] = job.state is JobState.COMPLETE and is_cid(str(result.get("cid") or ""))
    # The poster from the local store (its CID path, ipfs://<cid>/thumbnail.jpg, is in result).
    data["poster"] = (
        f"/store/{result['cid']}/thumbnail.jpg"
        if data["playable"] and result.get("thumbnail")
        else None
    )
    for key in ("owner", "permlink"):
        value = job.request.get(key) if isinstance(job.request, dict) else None
        data[key] = str(value) if isinstance(value, (str, int)) else None
    return data


__all__ = ["public_job", "public_source"]
