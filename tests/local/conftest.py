"""A throwaway PostgreSQL schema per test, on the server ``BILLING_CREDITS_TEST_PG_URL`` names.

``.ci/run`` starts Debian's PostgreSQL and sets the variable; without it the PostgreSQL tests
skip on a developer's machine and fail under ``CI=true`` (CI must run them).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_URL = os.environ.get("BILLING_CREDITS_TEST_PG_URL", "")


def require_postgres() -> str:
    if not PG_URL:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("BILLING_CREDITS_TEST_PG_URL is not set: CI runs the PostgreSQL tests "
                        "(.ci/run starts the server and sets it)")
        pytest.skip("no PostgreSQL server: set BILLING_CREDITS_TEST_PG_URL to run these")
    return PG_URL


def in_schema(url: str, schema: str) -> str:
    """``url`` with its connections' search path set to ``schema``."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose connections work in a fresh schema of their own, dropped afterwards."""
    import psycopg

    url = require_postgres()
    schema = f"bc_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield in_schema(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """Where a ``local`` ledger lives, once per engine: a SQLite path or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path) + "/credits.db"
    url: str = request.getfixturevalue("pg_url")
    return url
