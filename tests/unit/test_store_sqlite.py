"""The job store on SQLite only: the default database file, errors, a store of an old schema
(the tests of both backends are in test_store.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from speak_encoder.config import Settings
from speak_encoder.errors import ConfigError, StoreUnavailable
from speak_encoder.node.store import JobStore
from speak_encoder.node.store.schema import SCHEMA_VERSION


def test_from_settings_creates_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "deep" / "data", database_url=None)
    store = JobStore.from_settings(settings)
    try:
        assert store.dialect == "sqlite" and store.migrate() == SCHEMA_VERSION
        assert (tmp_path / "deep" / "data" / "jobs.sqlite3").exists()
    finally:
        store.close()


def test_unopenable_sqlite_is_store_unavailable(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'missing-dir' / 'jobs.sqlite3'}")
    try:
        with pytest.raises(StoreUnavailable, match="cannot be reached"):
            store.migrate()
    finally:
        store.close()


@pytest.mark.parametrize("url", ["not a url :// Sup3rSecretPw", "mysql://u:Sup3rSecretPw@h/db"])
def test_bad_urls_are_config_errors_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        JobStore(url)
    assert "Sup3rSecretPw" not in str(caught.value)


def test_a_version_1_store_is_migrated_to_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    with sqlite3.connect(path) as db:  # a store written by schema version 1
        db.executescript(
            "CREATE TABLE jobs (id VARCHAR(32) PRIMARY KEY, kind VARCHAR(32) NOT NULL,"
            " source TEXT NOT NULL, short BOOLEAN NOT NULL, rungs TEXT, priority INTEGER NOT NULL,"
            " request TEXT NOT NULL, external_id TEXT, dedup_key TEXT, size_hint BIGINT,"
            " state VARCHAR(16) NOT NULL, stage VARCHAR(16), attempts INTEGER NOT NULL,"
            " progress TEXT NOT NULL, error TEXT, error_kind VARCHAR(64), result TEXT,"
            " created_at FLOAT NOT NULL, updated_at FLOAT NOT NULL, started_at FLOAT,"
            " finished_at FLOAT, next_attempt_at FLOAT, lease_owner TEXT,"
            " lease_expires_at FLOAT, cancel_requested BOOLEAN NOT NULL);"
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
            " applied_at FLOAT NOT NULL);"
            "INSERT INTO schema_version VALUES (1, 'jobs, checkpoints, outbox', 0);"
            "INSERT INTO jobs VALUES ('" + "a" * 32 + "', 'local', '/old.mp4', 0, NULL, 0, '{}',"
            " NULL, NULL, NULL, 'queued', NULL, 0, '{}', NULL, NULL, NULL, 1, 1, NULL, NULL,"
            " NULL, NULL, NULL, 0);"
        )
    store = JobStore(f"sqlite:///{path}")
    try:
        assert store.migrate() == SCHEMA_VERSION == 3
        old = store.require("a" * 32)
        assert old.source == "/old.mp4" and old.interruptions == 0 and old.generation == 0
    finally:
        store.close()
