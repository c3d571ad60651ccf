"""The unit tier runs the job store's tests on SQLite only: ``store_url`` and ``job_store`` have
the one parameter ``sqlite`` here (tests/integration runs the same tests on PostgreSQL)."""

from tests.support.store_fixtures import store_url_over

store_url = store_url_over("sqlite")
