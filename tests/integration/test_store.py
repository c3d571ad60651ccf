"""The job store on a real PostgreSQL server: every test of tests/unit/test_store.py again
(there on SQLite), plus what only PostgreSQL has."""

from __future__ import annotations

import traceback

import pytest

from speak_encoder.errors import StoreUnavailable
from speak_encoder.node.store import JobStore
from speak_encoder.testing.postgres import free_port
from tests.support.store_fixtures import store_url_over
from tests.unit.test_store import *  # noqa: F403  (the tests, collected here once more)

store_url = store_url_over("postgresql")


def test_unreachable_postgres_is_store_unavailable_without_the_password() -> None:
    url = f"postgresql://encoder:Sup3rSecretPw@127.0.0.1:{free_port()}/jobs"
    store = JobStore(url)
    try:
        assert "Sup3rSecretPw" not in repr(store) and "encoder" not in repr(store)
        assert store.dialect == "postgresql"
        with pytest.raises(StoreUnavailable) as caught:
            store.get("0" * 32)
        shown = "".join(traceback.format_exception(caught.value))
        assert "cannot be reached" in str(caught.value)
        assert "Sup3rSecretPw" not in shown and "Sup3rSecretPw" not in str(caught.value)
        assert caught.value.retryable
        with pytest.raises(StoreUnavailable):
            store.migrate()
    finally:
        store.close()
