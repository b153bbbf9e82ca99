"""plans.applied_s / applied_by / notes: a recorded recommendation can be applied once,
by someone, and keeps the planner's notes (why it stopped where it did)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 21:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('applied_s', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('applied_by', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('notes', sa.Text(), nullable=False, server_default=''))
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_actor'), ['actor'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_actor'))
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.drop_column('notes')
        batch_op.drop_column('applied_by')
        batch_op.drop_column('applied_s')
