"""`drs db upgrade|downgrade|current`: manage the schema through Alembic."""

from __future__ import annotations

import click

from libvirt_drs.cli.common import (
    AppContext,
    confirm,
    console,
    json_option,
    pass_app,
    print_json,
    yes_option,
)


@click.group()
def db() -> None:
    """Create, upgrade or downgrade the database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
@json_option
@pass_app
def upgrade(app: AppContext, revision: str, as_json: bool) -> None:
    """Bring the database to REVISION (default: head); creates an empty database's schema."""
    from libvirt_drs.db import schema  # noqa: PLC0415
    from libvirt_drs.db.engine import make_engine  # noqa: PLC0415

    engine = make_engine(app.config.database_url)
    schema.upgrade(engine, revision)
    _print_revision(schema.current_revision(engine), as_json)


@db.command("downgrade")
@click.argument("revision", default="-1")
@yes_option
@json_option
@pass_app
def downgrade(app: AppContext, revision: str, yes: bool, as_json: bool) -> None:
    """Step the schema back to REVISION (default: one step; `base` drops every table and
    its data). Asks first (--yes skips the question)."""
    from libvirt_drs.db import schema  # noqa: PLC0415
    from libvirt_drs.db.engine import make_engine  # noqa: PLC0415
    from libvirt_drs.secrets import redact  # noqa: PLC0415

    engine = make_engine(app.config.database_url)
    now = schema.current_revision(engine) or "base"
    what = ("drop every table and all recorded data" if revision == "base"
            else f"step the schema back from {now} to {revision} (dropping what later "
                 "revisions added)")
    confirm(f"{redact(app.config.database_url)}: {what}?", yes)
    schema.downgrade(engine, revision)
    _print_revision(schema.current_revision(engine), as_json)


@db.command("current")
@json_option
@pass_app
def current(app: AppContext, as_json: bool) -> None:
    """Show the schema revision of the database and the head revision of this release."""
    from libvirt_drs.db import schema  # noqa: PLC0415
    from libvirt_drs.db.engine import make_engine  # noqa: PLC0415

    engine = make_engine(app.config.database_url)
    data = {"current": schema.current_revision(engine), "head": schema.head_revision()}
    if as_json:
        print_json(data)
    else:
        console.print(f"current: {data['current'] or 'base'}  head: {data['head']}", highlight=False)


def _print_revision(revision: str | None, as_json: bool) -> None:
    if as_json:
        print_json({"current": revision})
    else:
        console.print(f"database at {revision or 'base'}", highlight=False)
