"""Alembic environment and revisions for the libvirt-drs database (see libvirt_drs.db.schema)."""
