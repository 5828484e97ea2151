"""inbox: events are applied to calls by the worker, not by the webhook

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('applied_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('error', sa.String(length=255), nullable=True))
    # Everything stored before the inbox existed was applied when it arrived.
    op.execute("UPDATE inbound_events SET applied_at = received_at")
    op.create_index('ix_inbound_events_pending', 'inbound_events', ['id'], unique=False,
                    sqlite_where=sa.text('applied_at IS NULL'), postgresql_where=sa.text('applied_at IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_inbound_events_pending', table_name='inbound_events',
                  sqlite_where=sa.text('applied_at IS NULL'), postgresql_where=sa.text('applied_at IS NULL'))
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.drop_column('error')
        batch_op.drop_column('applied_at')
