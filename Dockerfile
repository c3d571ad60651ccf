# syntax=docker/dockerfile:1
# speak-encoder: the 3Speak video encoder node, on Debian with the distribution's ffmpeg.
#
#   docker build -t speak-encoder .
#   docker run -d --name speak-encoder --init --stop-timeout 90 \
#     --env-file /etc/speak-encoder/env -v speak-encoder-data:/data speak-encoder
#   docker exec speak-encoder speak-encoder doctor
#
# Secrets (ENCODER_PRIVATE_KEY, DIRECT_API_KEY, tokens …) come from the environment or the
# data volume at run time, never from the image. The operator server (/health, /ready,
# /metrics) listens on 127.0.0.1:3001 inside the container; to reach it from the host set
# DASHBOARD_HOST=0.0.0.0 and publish it on the host's loopback only: -p 127.0.0.1:3001:3001.
# --stop-timeout: SIGTERM gives running jobs SHUTDOWN_GRACE (60 s) before they are requeued.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the package and its locked dependencies in a virtual environment ----------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY src ./src
# The runtime dependencies at the versions of requirements.lock (the runtime set only: the test
# and lint tools are in requirements-dev.lock, which never enters the image).
RUN python -m venv /opt/speak-encoder \
    && /opt/speak-encoder/bin/pip install --constraint requirements.lock . \
    && /opt/speak-encoder/bin/pip uninstall --yes pip

# --- runtime -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# ffmpeg/ffprobe from Debian (versions follow the distribution's security updates).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 speak-encoder \
    && useradd --system --uid 10001 --gid speak-encoder --home-dir /data \
       --shell /usr/sbin/nologin speak-encoder \
    && install -d -o speak-encoder -g speak-encoder -m 0750 /data
COPY --from=build /opt/speak-encoder /opt/speak-encoder
ENV PATH=/opt/speak-encoder/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/data \
    LOG_FORMAT=json
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 3001
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["speak-encoder", "healthcheck"]
CMD ["speak-encoder", "run"]
