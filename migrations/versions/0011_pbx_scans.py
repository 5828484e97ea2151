"""Bulk quality scans of the PBX's call statistics (one lease row per rolling window; a poll knows the
contact centre handled its call), and when the PBX said a recording's file is in its cloud (the player's first fetch waits a little after it)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'pbx_scans',
        sa.Column('name', sa.String(length=16), nullable=False),
        sa.Column('next_at', sa.DateTime(), nullable=False),
        sa.Column('lease_owner', sa.String(length=64), nullable=True),
        sa.Column('lease_until', sa.DateTime(), nullable=True),
        sa.Column('last_started_at', sa.DateTime(), nullable=True),
        sa.Column('last_finished_at', sa.DateTime(), nullable=True),
        sa.Column('last_calls', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('name'),
    )
    with op.batch_alter_table('calls', schema=None) as batch:
        batch.add_column(sa.Column('recording_stored_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('pbx_polls', schema=None) as batch:
        batch.add_column(sa.Column('contact_center', sa.Boolean(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('pbx_polls', schema=None) as batch:
        batch.drop_column('contact_center')
    with op.batch_alter_table('calls', schema=None) as batch:
        batch.drop_column('recording_stored_at')
    op.drop_table('pbx_scans')
