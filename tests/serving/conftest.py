import os

import pytest


@pytest.fixture
def pg_url():
    """A PostgreSQL URL with empty tables ($METAREC_PG_URL; .ci/run starts a server), or skip."""
    url = os.environ.get("METAREC_PG_URL")
    if not url:
        pytest.skip("METAREC_PG_URL is not set (no PostgreSQL server here; .ci/run starts one)")
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS events, items, users, served")
    return url
