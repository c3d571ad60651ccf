"""speak-encoder: a memory-flat, crash-safe video encoder node for the 3Speak network.

Public API
==========

The supported way to use the project is the ``speak-encoder`` command
(:func:`speak_encoder.cli.main`; ``python -m speak_encoder``). For code that embeds it, each
module's ``__all__`` is its public surface; a name not listed there (and every ``_name``) is
internal and may change. The entry points worth knowing, bottom layer first:

Settings and errors
    :class:`speak_encoder.config.Settings`, :func:`speak_encoder.config.load_settings` (every
    setting, read once); :class:`speak_encoder.errors.SpeakEncoderError` and its two branches
    :class:`speak_encoder.errors.RetryableError` / :class:`speak_encoder.errors.PermanentError`
    (the tree is drawn in the module's docstring).
One encode (the pipeline)
    :func:`speak_encoder.pipeline.encode_job.encode` (source → validated HLS folder, an
    :class:`speak_encoder.pipeline.encode_job.EncodeResult`);
    :func:`speak_encoder.pipeline.verify.validate_folder` (the six checks of
    ``docs/encoding.md`` §6); the pure pieces :func:`speak_encoder.pipeline.probe.probe`,
    :func:`speak_encoder.pipeline.plan.plan_encode`,
    :func:`speak_encoder.pipeline.ffmpeg.build_command`.
Content addressing and publishing
    :func:`speak_encoder.storage.unixfs.import_path` (the CID ``ipfs add`` gives),
    :func:`speak_encoder.storage.car.write_car`, :class:`speak_encoder.storage.kubo.KuboClient`,
    :func:`speak_encoder.storage.targets.publish_folder`.
The node service
    :class:`speak_encoder.service.Service` (what ``speak-encoder run`` runs) and its job
    store :class:`speak_encoder.node.store.JobStore`.
Operator surface
    :func:`speak_encoder.web.app.create_web_app` (``/health``, ``/ready``, ``/metrics``, the
    dashboard).
Test doubles
    ``speak_encoder.testing`` (reference 3Speak servers, sample media, a js-ipfs node, a
    throwaway PostgreSQL): shared by the test suite and local trials, not for production.

Here: :data:`__version__` and :data:`USER_AGENT` (``speak-encoder/<version>``, sent with every
request). Where each module lives: the README's "Layout"; wire formats and the output contract:
``docs/protocols.md``, ``docs/encoding.md``.
"""

#: The release (pyproject.toml reads it from here: one place). A literal, not
#: ``importlib.metadata``: that import costs every command ~3 MB of RSS and ~40 ms.
__version__ = "0.1.0"

USER_AGENT = f"speak-encoder/{__version__}"

__all__ = ["USER_AGENT", "__version__"]
