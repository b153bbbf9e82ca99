"""Alembic environment and revisions for the libvirt-drs database (see drs.db.schema)."""
