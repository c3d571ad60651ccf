"""The operator surface: ``/health``, ``/ready``, Prometheus ``/metrics`` (and the dashboard).

Public names: :func:`~speak_encoder.web.app.create_web_app` and
:func:`~speak_encoder.web.app.serve_web` (the server, :mod:`speak_encoder.web.app`), and the
metrics :data:`~speak_encoder.web.metrics.REGISTRY` the pipeline reports to
(:mod:`speak_encoder.web.metrics`). Importing this package loads neither FastAPI nor uvicorn:
the pipeline can report metrics without pulling in the web server.
"""

from __future__ import annotations

from speak_encoder.web.metrics import REGISTRY, Registry

__all__ = ["REGISTRY", "Registry"]
