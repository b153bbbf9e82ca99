"""replica_points, replica_states: disaster recovery replicas (libvirt_drs/replication)

replica_points: one row per complete, verified recovery point of a protected VM.
replica_states: per VM, the last replication attempt and its error.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'replica_points',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('vm_name', sa.String(length=255), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('policy', sa.String(length=255), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('source_host', sa.String(length=255), nullable=False),
        sa.Column('recovery_host', sa.String(length=255), nullable=False),
        sa.Column('checkpoint', sa.String(length=255), nullable=False),
        sa.Column('taken_s', sa.Float(), nullable=False),
        sa.Column('completed_s', sa.Float(), nullable=False),
        sa.Column('volumes', sa.Text(), nullable=False),
        sa.Column('bytes_sent', sa.BigInteger(), nullable=False),
        sa.Column('domain_xml', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('vm_name', 'seq', name=op.f('uq_replica_points_vm_name')),
    )
    with op.batch_alter_table('replica_points', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_replica_points_vm_name'), ['vm_name'], unique=False)
    op.create_table(
        'replica_states',
        sa.Column('vm_name', sa.String(length=255), nullable=False),
        sa.Column('last_attempt_s', sa.Float(), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=False),
        sa.Column('last_error_s', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('vm_name'),
    )


def downgrade() -> None:
    op.drop_table('replica_states')
    with op.batch_alter_table('replica_points', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_replica_points_vm_name'))
    op.drop_table('replica_points')
