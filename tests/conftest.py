"""Test configuration: fixtures live in tests/support/*, one module per part of the system."""

import os

# No env file of the developer's (~/.config/speak-encoder/env) leaks into the tests; a test
# that wants one names it.
os.environ["SPEAK_ENCODER_ENV_FILE"] = ""

pytest_plugins = [
    "tests.support.media_fixtures",
    "tests.support.fetch_fixtures",
    "tests.support.hls_fixtures",
    "tests.support.ipfs_fixtures",
    "tests.support.store_fixtures",
    "tests.support.node_fixtures",
    "tests.support.webhook_fixtures",
    "tests.support.gateway_fixtures",
    "tests.support.browser_fixtures",
]
