"""Schema management through Alembic (the schema is never created any other way)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from libvirt_drs import migrations
from libvirt_drs.errors import UserError
from libvirt_drs.libvirt_errors import first_line
from libvirt_drs.secrets import redact

SCRIPT_LOCATION = str(Path(migrations.__file__).resolve().parent)


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    script = ScriptDirectory(SCRIPT_LOCATION)
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    revision: str | None = None
    with _db_errors(engine), engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
    return revision


def check_revision(revision: str) -> str:
    """A revision argument Alembic can resolve (head, base, -N/+N or a known id), else a
    one-line UserError: checked before the database is opened, so nothing is written."""
    expected = "expected head, base, -N, +N or a revision id of this release"
    if not revision or revision != revision.strip() or not revision.isprintable():
        raise UserError(f"revision {revision!r}: {expected}")
    if revision in ("head", "heads", "base") or re.fullmatch(r"[+-]\d{1,6}", revision):
        return revision
    try:
        found = ScriptDirectory(SCRIPT_LOCATION).get_revision(revision)
    except (CommandError, RevisionError, ValueError, KeyError) as exc:
        raise UserError(f"revision {revision!r}: {first_line(exc)}; {expected}") from None
    if found is None:
        raise UserError(f"revision {revision!r}: {expected}")
    return revision


def upgrade(engine: Engine, revision: str = "head") -> None:
    check_revision(revision)
    with _db_errors(engine), _revision_errors(revision):
        command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    check_revision(revision)
    with _db_errors(engine), _revision_errors(revision):
        command.downgrade(alembic_config(engine), revision)


@contextmanager
def _revision_errors(revision: str) -> Iterator[None]:
    """Alembic's errors about revisions (e.g. -5 below base) as one-line UserErrors."""
    try:
        yield
    except (CommandError, RevisionError) as exc:
        raise UserError(f"revision {revision!r}: {first_line(exc)}") from None


def require_current(engine: Engine) -> None:
    """Refuse to work on a database whose schema is not at head (run `drs db upgrade`)."""
    current = current_revision(engine)
    if current != head_revision():
        raise UserError(f"database schema is at {current or 'nothing'}, expected "
                        f"{head_revision()}: run `drs db upgrade`")


class _db_errors:
    """Turn driver errors (unreachable server, bad password) into one-line UserErrors."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:  # type: ignore[no-untyped-def]
        if exc is not None and isinstance(exc, OperationalError | SQLAlchemyError):
            detail = first_line(getattr(exc, "orig", exc))
            url = self.engine.url.render_as_string(hide_password=True)
            raise UserError(f"database {url}: {redact(detail)}") from None
        return False
