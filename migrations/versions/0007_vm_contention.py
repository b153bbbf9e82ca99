"""vm_samples.cpu_wait_cores and swap_in_kib_s: the contention signal

Cores a VM's vCPUs waited in the host's run queue (from libvirt's vcpu.<n>.delay) and the
guest's swap-in rate in KiB/s, per sample; NULL where the host or guest reports neither.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 03:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('vm_samples', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cpu_wait_cores', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('swap_in_kib_s', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('vm_samples', schema=None) as batch_op:
        batch_op.drop_column('swap_in_kib_s')
        batch_op.drop_column('cpu_wait_cores')
