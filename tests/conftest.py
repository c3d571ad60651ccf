"""Test configuration: fixtures live in tests/support/*, one module per part of the system."""

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
