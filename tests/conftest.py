"""Shared fixtures: databases (tests/support/db.py) and the lab cluster.

Keep the database import below when adding fixtures to this file.
"""

from tests.support.db import db_engine, db_url, fresh_postgres_url  # noqa: F401
