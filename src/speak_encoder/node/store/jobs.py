"""Jobs and their checkpoints: :class:`JobQueries`, the job store's side of them, by concern.

=================  ==============================================================
``job_offers``     submitting and offering (dedup, ``QUEUE_MAX``, reopening)
``job_leases``     claims and leases, stage, progress, checkpoints, requeue
``job_finish``     how a run ends (its owner's outcomes), cancel, retry, prune
``job_reads``      one job, lists and counts, a job's checkpoints (read only)
``job_rows``       rows ↔ records, shared by the four above
=================  ==============================================================

Concurrency, in one paragraph: on PostgreSQL a claim is ``SELECT … FOR UPDATE SKIP LOCKED``
(several nodes share one queue), submissions take a transaction-level advisory lock (the
dedup check and the ``QUEUE_MAX`` count are exact), and migrations take another. On SQLite every
write transaction is ``BEGIN IMMEDIATE`` (the database's write lock is taken up front, so the
read-then-write of a claim or a submit cannot interleave), reads are plain deferred ``BEGIN``,
the journal is WAL and a busy connection waits ``busy_timeout``. In both, a partial unique
index allows at most one *active* job per dedup key whatever happens.

Every ownership-changing call (``complete``, ``fail``, ``retry_later``, ``requeue``,
``mark_cancelled``) acts only on a job that is ``running`` under the caller's lease and
returns ``False`` (changing nothing) otherwise, so a node that lost its lease cannot overwrite
the work of the node that took the job over.

A job offered again by its source (a Direct API duplicate, an embed re-claim) is never
encoded twice and never left without a report: see :mod:`~speak_encoder.node.store.job_offers`.
"""

from __future__ import annotations

from speak_encoder.node.store.job_finish import JobFinish
from speak_encoder.node.store.job_leases import JobLeases
from speak_encoder.node.store.job_offers import JobOffers
from speak_encoder.node.store.job_reads import JobReads


class JobQueries(JobOffers, JobLeases, JobFinish, JobReads):
    """Jobs and checkpoints (see the module docstring)."""


__all__ = ["JobQueries"]
