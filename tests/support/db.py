"""Database fixtures shared by every store test: SQLite and the real PostgreSQL.

`db_url` is parametrised over both backends. PostgreSQL comes from
DRS_TEST_POSTGRES_URL (deploy/test.sh starts one); in CI (CI=true) its absence is a
failure, elsewhere a skip. Each test gets a fresh, empty database at schema head.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine, scratch_database

PG_ENV = "DRS_TEST_POSTGRES_URL"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def postgres_admin_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        if in_ci():
            pytest.fail(f"{PG_ENV} is not set: CI must run the store tests on PostgreSQL")
        pytest.skip(f"{PG_ENV} not set (run through deploy/test.sh)")
    return url


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A new empty PostgreSQL database for one test, dropped afterwards."""
    with scratch_database(postgres_admin_url(), "drs_test") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database (no schema) on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'drs.sqlite'}"
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    """An engine on an empty database brought to schema head."""
    engine = make_engine(db_url)
    schema.upgrade(engine)
    yield engine
    engine.dispose()
