#!/usr/bin/env bash
# Installs what the test suite drives for real, only when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
