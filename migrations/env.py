"""Alembic environment: runs online against the engine handed over by libvirt_drs.db.schema."""

from __future__ import annotations

from alembic import context

from libvirt_drs.db.engine import make_engine
from libvirt_drs.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:  # plain `alembic -x url=...` use
        engine = make_engine(context.get_x_argument(as_dictionary=True)["url"])
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `drs db upgrade`")
run_migrations_online()
