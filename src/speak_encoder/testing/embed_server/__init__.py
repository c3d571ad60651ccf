"""A reference model of the real 3Speak **embed server**, the upstream of the embed gateway
(docs/protocols.md §3): :class:`EmbedServer`, in modules by concern (the table at the end).

The real server is the public repository ``Mantequilla-Soft/embedvideos`` (Express + MongoDB).
This package models what it does for encoders, from its code (read, not copied): ``src/index.ts``
(routes), ``src/database/mongodb.ts`` (the record updates), ``src/dispatcher/jobDispatcher.ts``
(managed mode; the newest stored version, commit ``a175cfe``, with tiers and the stall check)
and ``src/utils/jws.ts``. Use it like the other reference servers::

    with EmbedServer() as embed:
        embed.add_video("alice", "clip", CID)               # video `processing` + job `pending`
        ...                                                  # a node polls embed.url (§3)
        embed.wait_for(lambda: embed.job("alice", "clip").status == "completed", timeout=60)
        assert embed.video("clip").status == "published"

Records (one Python attribute per real field; the real camelCase name in brackets):

- **videos** by ``permlink``: ``status`` (``processing`` → ``published`` / ``failed``; uploads
  are not modelled, so a video starts ``processing`` with its ``input_cid`` pinned),
  ``manifest_cid``, ``encoding_progress`` [encodingProgress], ``short``, ``frontend_app``,
  ``original_filename`` [originalFilename], ``size``;
- **jobs** by ``(owner, permlink)`` (unique, as the real ``createJob`` index): ``status``
  (``pending`` / ``encoding`` / ``completed`` / ``failed``), ``attempt_count`` [attemptCount],
  ``assigned_worker`` [assignedWorker], ``encoder_job_id`` [encoderJobId], ``callback_token``
  [callbackToken], ``encoding_progress``, ``encoding_stage`` [encodingStage], ``last_error``
  [lastError], ``webhook_received_at`` [webhookReceivedAt], ``premium``, ``short``,
  ``file_size`` [fileSize], ``updated_at`` [updatedAt: the stall clock];
- **encoders** by ``name``: managed ones (``name``, ``url``, ``api_key``, ``enabled``, ``tier``,
  ``max_file_size``) and community ones, created by ``updateNode``
  (``upsertCommunityEncoder``): name ``community-<last 12 characters of the DID>`` (stable, not
  chosen by the node), ``did``, ``display_name`` (the node's own name), ``hive_account``,
  ``peer_id``, ``commit_hash``, ``tier`` ``lite``, ``access`` ``community``, ``enabled`` true,
  ``banned`` false.

Routes modelled (answers worded as the real code words them):

- ``POST /webhook`` (the encoders' reports): ``X-API-Key`` must be the server's webhook key or
  the job's **current** ``callback_token`` (else 401 ``{"error":"Unauthorized"}``: a token of an
  earlier claim is refused). ``complete`` → video ``published`` with ``manifest_cid`` and
  progress 100, job ``completed``; ``failed`` → requeued (``pending``, worker cleared,
  ``attempt_count`` + 1, video back to ``processing``) while ``attempt_count`` < 2, then
  ``failed`` for good with the video; any other status → 400 ``{"error":"Unknown status"}``.
  Neither checks the job's state first: a completion for a ``pending`` job completes it.
- ``POST /webhook/progress``: 400 without ``owner``/``permlink``/numeric ``progress``, 404
  ``{"error":"Job not found"}``, then the same auth (so an unknown job is a 404 whatever the key),
  then job → ``encoding`` with the progress and stage **and video → ``processing``** — a ping
  that arrives after the completion un-publishes the video, as the real server does.
- ``POST /api/v0/gateway/updateNode`` / ``myJob`` / ``heartbeat`` (JWS-POSTs, verified with
  :func:`~speak_encoder.node.identity.verify_jws`; the signer is the ``kid``'s DID; any failure is
  401 ``{"error":"Invalid JWS signature"}``). ``updateNode`` accepts ``{"node_info": {…}}`` or the
  flat object and answers ``{"success":true,"encoder":{"name","did","tier","access","enabled"}}``.
  ``myJob``: 404 ``{"error":"Encoder not registered"}``, 403 ``{"error":"Encoder is disabled or
  banned"}``, else the oldest ``pending`` job with ``premium`` and ``short`` false (and a known
  size within the encoder's ``max_file_size``, when one is set) is claimed atomically: job →
  ``encoding``, ``assigned_worker`` = the encoder's name and a **fresh random callback token per
  claim**, sent as ``api_key``; answer ``{"success":true,"job":{"owner","permlink","input_cid":
  "<IPFS gateway>/<cid>","short","premium":false,"webhook_url","api_key","frontend_app",
  "originalFilename"}}`` or ``{"success":true,"job":null}`` (a claimed job whose video has no
  ``input_cid`` is reset and ``null`` answered). ``heartbeat``: 404 when not registered, else
  ``{"success":true}`` — it does **not** check ``enabled``/``banned`` (the real code does not),
  and it has no ``needs_update``.
- ``GET /video/<permlink>`` (the video document or 404 ``{"error":"Video not found"}``),
  ``GET /health``, ``GET /`` (a redirect to ``/demo.html``), and Express's own answers: an
  unknown route is a 404 HTML page ``Cannot <METHOD> <path>``, a body that is not JSON a 400.

Managed mode (the dispatcher, :meth:`EmbedServer.dispatch_once`, every ``dispatch_interval``
seconds in the background when set; the real one runs every 30 s and at start, and is off by
default here as with ``DISPATCHER_ENABLED=false``): first the stall check
(:meth:`~EmbedServer.reset_stalled` with ``stall_after``, 30 min as the real one), then up to 5
jobs, each claimed atomically (**any** pending job: premium, short and free alike) and POSTed to
``<encoder.url>/encode`` with ``X-API-Key: <encoder.api_key>`` and ``{"owner","permlink",
"input_cid":"<IPFS gateway>/<cid>","short","premium","webhook_url","api_key":<the server's webhook
key>,"frontend_app","originalFilename"}``. Encoders are chosen as the real ``getNextEncoder``:
enabled managed ones only; short → any tier (size-capped first); premium → ``performance`` then
``standard``; free → ``standard`` then ``lite``; round-robin per group. A 2xx makes the job
``encoding`` with ``encoder_job_id`` = the answer's ``job_id``; a failure (no encoder, connection
error, non-2xx, not JSON) adds 1 to ``attempt_count`` and puts the job back to ``pending`` with
``last_error``, and when the count was already 3, fails job and video (``Max attempts exceeded:
…``).

Admin actions (methods, and the real ``POST /admin/jobs/<owner>/<permlink>/redispatch`` as
``/_reference/jobs/…/redispatch``): :meth:`~EmbedServer.redispatch` (``resetJob``: ``pending``,
``attempt_count`` 0, worker, encoder job id, error and progress cleared — **not** the callback
token, which stays valid until the next claim, as in the real code — video ``processing``);
:meth:`~EmbedServer.reset_stalled` (``encoding`` jobs not updated for ``older_than_s``: the first
two stalls → ``pending``, ``attempt_count`` + 1, ``last_error`` "Reset due to stall (no progress
update)"; the third → ``failed``, video too); :meth:`~EmbedServer.remove_encoder` (``heartbeat``/
``myJob`` are then 404 until the node registers again — as a new, enabled encoder);
:meth:`~EmbedServer.set_encoder` (``enabled``, ``banned``, …).

Test helpers: :meth:`~EmbedServer.add_video`, :meth:`~EmbedServer.add_managed_encoder`, snapshots
(:meth:`~EmbedServer.video`, :meth:`~EmbedServer.job`, :meth:`~EmbedServer.encoder`, …), the log
of every request in and out (:class:`EmbedCall`: route, headers of interest, parsed body,
verified JWS payload and signer, answer, receive and answer times), :meth:`~EmbedServer.wait_for`
(a condition wait with a deadline) and :meth:`~EmbedServer.fail_next` (faults per route, as the
reference gateway's: ``500``, ``timeout``, ``malformed``, ``html``, ``404``, ``401`` — the last
two answered with the real server's bodies for that route). Knobs: ``progress_delay`` /
``webhook_delay`` hold a received report that long before it is processed (a slow receiver, to
test the order in which reports take effect).

Not modelled: uploads (TUS, simple, chunked, upload tokens), deferred encodes, gated content (and
the trusted-encoder rules), replacements, Hive links, thumbnails, users' stats and bans, premium
look-ups (a job's ``premium`` is given), unpinning the input, the admin HTTP routes' password and
the other admin routes, the public ``/api/v0/encoders/*`` status routes, several dispatcher
replicas, cycles that overlap (``setInterval`` does not wait for the previous cycle).

Guesses (not in the code read): each handler's record updates are applied at once under one lock
(the real handlers interleave their ``await``-ed MongoDB calls); a claim ties on ``createdAt`` in
insertion order; the body of Express's 400 page ("Bad Request") and of a proxy's 504 after a
``timeout`` fault; the dispatcher's ``User-Agent`` (``node``) and the wording of a dispatch error
for a connection failure (``fetch failed``, Node's) or an answer that is not JSON; the
dispatcher's request timeout (``dispatch_timeout``; Node's fetch waits up to 300 s for headers).

The package, by concern:

=================  ==============================================================
``records``        the records (videos, jobs, encoders) and what the model reports
``protocol``       the real server's limits, timings and error bodies; a handler's answer
``state``          the records under one lock, their updates, the tests' controls and waits
``http``           answering a request: the call log, holds, delays, faults
``auth``           the webhook key / callback token check; a JWS and its signer's DID
``webhooks``       ``POST /webhook`` and ``POST /webhook/progress``
``community``      ``updateNode``, ``myJob``, ``heartbeat`` (the community encoders)
``admin``          managed encoders, ``set_encoder``, ``remove_encoder``, ``redispatch``
``dispatch``       managed mode: the dispatcher, its stall check, its thread
``server``         :class:`EmbedServer` composing them: the route table, the GET routes
=================  ==============================================================
"""

from __future__ import annotations

from speak_encoder.testing.embed_server.protocol import (
    DEFAULT_WEBHOOK_KEY,
    DISPATCH_INTERVAL_S,
    IPFS_GATEWAY,
    MAX_ENCODE_ATTEMPTS,
    STALL_AFTER_S,
)
from speak_encoder.testing.embed_server.records import (
    DispatchResult,
    EmbedAdminError,
    EmbedCall,
    EmbedJob,
    Encoder,
    StallOutcome,
    Video,
)
from speak_encoder.testing.embed_server.server import EmbedServer

__all__ = [
    "DEFAULT_WEBHOOK_KEY",
    "DISPATCH_INTERVAL_S",
    "IPFS_GATEWAY",
    "MAX_ENCODE_ATTEMPTS",
    "STALL_AFTER_S",
    "DispatchResult",
    "EmbedAdminError",
    "EmbedCall",
    "EmbedJob",
    "EmbedServer",
    "Encoder",
    "StallOutcome",
    "Video",
]
