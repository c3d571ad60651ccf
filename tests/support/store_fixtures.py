"""Job store fixtures: SQLite in a temp folder, and a real PostgreSQL server per session.

``sqlite_store`` / ``pg_store``  a migrated :class:`JobStore` on a fresh, empty database
``sqlite_url`` / ``pg_url``      the URL of a fresh, empty database (nothing migrated)
``store_url`` / ``job_store``    parametrized over both backends (ids ``sqlite``, ``postgresql``);
                                 ``store_url = store_url_over("sqlite")`` in a conftest or a
                                 test module narrows both to the backends it names
``pg_server``                    the session's :class:`PostgresServer` (an error if PostgreSQL
                                 is not installed — never a skip)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from speak_encoder.node.store import JobStore
from speak_encoder.testing.postgres import PostgresServer

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = pg_server.create_database(name)
    try:
        yield url
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.sqlite3'}"


def _migrated(url: str) -> Iterator[JobStore]:
    store = JobStore(url)
    store.migrate()
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[JobStore]:
    yield from _migrated(sqlite_url)


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[JobStore]:
    yield from _migrated(pg_url)


def store_url_over(*backends: str) -> Callable[[pytest.FixtureRequest], str]:
    """A ``store_url`` fixture parametrized over ``backends`` (a subset of :data:`BACKENDS`)."""
    unknown = set(backends) - set(BACKENDS)
    assert backends and not unknown, f"unknown backends {sorted(unknown)}"

    @pytest.fixture(name="store_url", params=backends)
    def store_url(request: pytest.FixtureRequest) -> str:
        """The URL of a fresh, empty database on each backend."""
        backend = "pg" if request.param == "postgresql" else "sqlite"
        url: str = request.getfixturevalue(f"{backend}_url")
        return url

    return store_url


store_url = store_url_over(*BACKENDS)


@pytest.fixture
def job_store(store_url: str) -> Iterator[JobStore]:
    """A migrated store on each backend."""
    yield from _migrated(store_url)
