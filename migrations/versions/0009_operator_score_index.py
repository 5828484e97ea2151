"""Sorting by score within one operator's calls: an index that matches it, so the last page of an
operator's list sorted by score does not scan every other operator's scores

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_calls_operator_score', 'calls', ['operator_extension', 'customer_score', 'listed_at', 'id'])


def downgrade() -> None:
    op.drop_index('ix_calls_operator_score', table_name='calls')
