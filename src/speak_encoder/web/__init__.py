"""The operator surface: ``/health``, ``/ready``, Prometheus ``/metrics`` and the dashboard.

A reader of the node, on top of it: :func:`~speak_encoder.web.app.create_web_app` and
:func:`~speak_encoder.web.app.serve_web` (the server, :mod:`speak_encoder.web.app`), the
exposition of ``/metrics`` (:mod:`speak_encoder.web.metrics`) and the dashboard
(:mod:`speak_encoder.web.dashboard`). The metrics registry the pipeline reports to lives below,
in :mod:`speak_encoder.node.metrics`. Importing this package loads neither Starlette nor
uvicorn.
"""

__all__: list[str] = []
