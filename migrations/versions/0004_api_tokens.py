"""api_tokens: who may use the REST API and the web console, with which role

A token is shown once when created (`drs tokens create`); only its SHA-256 is stored.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'api_tokens',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('secret_sha256', sa.String(length=64), nullable=False),
        sa.Column('created_s', sa.Float(), nullable=False),
        sa.Column('created_by', sa.String(length=255), nullable=False),
        sa.Column('last_used_s', sa.Float(), nullable=True),
        sa.Column('revoked_s', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
        sa.UniqueConstraint('secret_sha256'),
    )


def downgrade() -> None:
    op.drop_table('api_tokens')
