"""ha_hosts, ha_restarts, vm_definitions: high availability of VMs (libvirt_drs/ha)

ha_hosts: the HA view of a host (suspected, fenced, fence failed) and who cleared it.
ha_restarts: one row per VM of a fenced host to restart elsewhere, until it runs.
vm_definitions: the last domain XML of every HA-protected VM, to define it on another
host when its own is gone.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'ha_hosts',
        sa.Column('host_name', sa.String(length=255), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('since_s', sa.Float(), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('fence_attempts', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('host_name'),
    )
    op.create_table(
        'ha_restarts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('vm_name', sa.String(length=255), nullable=False),
        sa.Column('failed_host', sa.String(length=255), nullable=False),
        sa.Column('destination', sa.String(length=255), nullable=True),
        sa.Column('priority', sa.String(length=8), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('created_s', sa.Float(), nullable=False),
        sa.Column('updated_s', sa.Float(), nullable=False),
        sa.Column('running_s', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('ha_restarts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ha_restarts_state'), ['state'], unique=False)
    op.create_table(
        'vm_definitions',
        sa.Column('vm_name', sa.String(length=255), nullable=False),
        sa.Column('host_name', sa.String(length=255), nullable=False),
        sa.Column('xml', sa.Text(), nullable=False),
        sa.Column('xml_sha256', sa.String(length=64), nullable=False),
        sa.Column('updated_s', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('vm_name'),
    )


def downgrade() -> None:
    op.drop_table('vm_definitions')
    with op.batch_alter_table('ha_restarts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ha_restarts_state'))
    op.drop_table('ha_restarts')
    op.drop_table('ha_hosts')
