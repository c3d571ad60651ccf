# speak-encoder — every entry point installs what it needs and is fast the second time.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
PYTHON ?= python3
DEMO_DIR ?= demo

.PHONY: help setup dev-setup system-deps test-deps demo test lint typecheck unit bench lock clean

help:
	@echo "make demo   encode a generated sample video into an HLS ladder"
	@echo "make test   lint + type checks + the whole test suite"
	@echo "make bench  benchmarks (figures printed)"
	@echo "make lint   ruff + mypy + the layering and error-tree checks"
	@echo "make unit   the unit tests only (tests/unit: no ffmpeg, Node, PostgreSQL, Chromium)"
	@echo "make setup  only the runtime: the venv with requirements.lock and the package"
	@echo "make lock   regenerate requirements.lock and requirements-dev.lock"

system-deps:
	@scripts/install-system-deps.sh

# Two stamps, so each entry point installs only what it needs, once:
#   $(STAMP)      the runtime set (requirements.lock) + the package itself: make demo / setup
#   $(DEV_STAMP)  the test, lint and type-check tools on top (requirements-dev.lock)
$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "error: Python >= 3.11 is required (found $$($(PYTHON) --version))"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> installing the runtime Python dependencies into $(VENV)"
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@# Bytecode now, as pip does for a regular install (an editable one leaves it to the first
	@# run, and with PYTHONDONTWRITEBYTECODE set every command would compile the package again).
	@$(PY) -m compileall -q src >/dev/null
	@touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.lock
	@echo "==> installing the test and lint tools into $(VENV)"
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.lock
	@touch $(DEV_STAMP)

setup: system-deps $(STAMP)

dev-setup: setup $(DEV_STAMP)

# Extra tools the test suite drives for real (IPFS node, ...).
test-deps: dev-setup
	@scripts/install-test-deps.sh

demo: setup
	@$(PY) -m speak_encoder.testing.demo "$(DEMO_DIR)"

# ruff, mypy, and the two structural checks: no import points up a layer (tests/unit/test_layers.py)
# and the error tree drawn in errors.py is the real one (tests/unit/test_errors.py).
lint: dev-setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit/test_layers.py tests/unit/test_errors.py

typecheck: lint

test: test-deps lint
	$(VENV)/bin/pytest

# tests/unit only, with PATH limited to the venv: no ffmpeg, Node, PostgreSQL or Chromium can be
# reached, so a unit test that needs one fails here instead of passing on a developer's machine.
unit: dev-setup
	env PATH=$(abspath $(VENV))/bin $(VENV)/bin/pytest tests/unit -q

# imageio-ffmpeg: a static ffmpeg with libvmaf for bench/quality.py only (never a node dependency).
BENCH_VMAF := imageio-ffmpeg==0.8.1

bench: test-deps
	@$(PY) -c 'import imageio_ffmpeg' 2>/dev/null || \
	  $(PY) -m pip install -q --disable-pip-version-check $(BENCH_VMAF)
	$(PY) bench/run_all.py

# Regenerate both lock files from pyproject.toml (needs the package index): the runtime set
# alone first, then the dev extras resolved against it (requirements-dev.lock holds only what
# the runtime set lacks, and starts with `-r requirements.lock`).
LOCKVENV := .lockvenv
lock:
	rm -rf $(LOCKVENV) && $(PYTHON) -m venv $(LOCKVENV)
	$(LOCKVENV)/bin/pip install -q --disable-pip-version-check -e .
	$(LOCKVENV)/bin/pip freeze --exclude-editable | grep -v '^-e' > $(LOCKVENV)/runtime.txt
	$(LOCKVENV)/bin/pip install -q --disable-pip-version-check -c $(LOCKVENV)/runtime.txt -e '.[dev]'
	$(LOCKVENV)/bin/pip freeze --exclude-editable | grep -v '^-e' \
	  | grep -vxF -f $(LOCKVENV)/runtime.txt > $(LOCKVENV)/dev.txt
	{ sed -n '/^#/p' requirements.lock; cat $(LOCKVENV)/runtime.txt; } > $(LOCKVENV)/requirements.lock
	{ sed -n '/^#/p' requirements-dev.lock; echo '-r requirements.lock'; cat $(LOCKVENV)/dev.txt; } \
	  > $(LOCKVENV)/requirements-dev.lock
	mv $(LOCKVENV)/requirements.lock $(LOCKVENV)/requirements-dev.lock .
	rm -rf $(LOCKVENV)

clean:
	rm -rf $(VENV) $(LOCKVENV) .tools .cache .mypy_cache .ruff_cache .pytest_cache $(DEMO_DIR)
