"""vms.last_seen_s dropped: a present VM was last seen at its host's last_seen_s

The collector rewrote that column for every VM on every cycle (20,000 row updates per
cycle at 1,000 hosts x 20 VMs: dead tuples and WAL for a value the host row already
holds). A present VM is seen when its host is (hosts.last_seen_s); a gone VM at gone_s.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 14:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.drop_column('last_seen_s')


def downgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_seen_s', sa.Float(), nullable=True))
    op.execute("UPDATE vms SET last_seen_s = COALESCE(gone_s, "
               "(SELECT hosts.last_seen_s FROM hosts WHERE hosts.id = vms.host_id), first_seen_s)")
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.alter_column('last_seen_s', existing_type=sa.Float(), nullable=False)
