# speak-encoder — every entry point installs what it needs and is fast the second time.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTHON ?= python3
DEMO_DIR ?= demo

.PHONY: help setup system-deps test-deps demo test lint typecheck unit bench lock clean

help:
	@echo "make demo   encode a generated sample video into an HLS ladder"
	@echo "make test   lint + type checks + the whole test suite"
	@echo "make bench  benchmarks (figures printed)"
	@echo "make lint   ruff + mypy only"

system-deps:
	@scripts/install-system-deps.sh

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "error: Python >= 3.11 is required (found $$($(PYTHON) --version))"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> installing Python dependencies into $(VENV)"
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

setup: system-deps $(STAMP)

# Extra tools the test suite drives for real (IPFS node, ...).
test-deps: setup
	@scripts/install-test-deps.sh

demo: setup
	@$(PY) -m speak_encoder.testing.demo "$(DEMO_DIR)"

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

typecheck: lint

test: test-deps lint
	$(VENV)/bin/pytest

unit: setup
	$(VENV)/bin/pytest -m "not slow"

# imageio-ffmpeg: a static ffmpeg with libvmaf for bench/quality.py only (never a node dependency).
BENCH_VMAF := imageio-ffmpeg==0.8.1

bench: test-deps
	@$(PY) -c 'import imageio_ffmpeg' 2>/dev/null || \
	  $(PY) -m pip install -q --disable-pip-version-check $(BENCH_VMAF)
	$(PY) bench/run_all.py

# Regenerate the lock file from pyproject.toml (needs the package index).
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install -q -e '.[dev]'
	.lockvenv/bin/pip freeze --exclude-editable | grep -v '^-e' > requirements.lock
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) .tools .cache .mypy_cache .ruff_cache .pytest_cache $(DEMO_DIR)
