"""Scheduled report e-mails (issue #20): each person's schedule, and one row per person and period sent exactly
once (a unique key, a lease)

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('report_subscriptions',
                    sa.Column('user_id', sa.Integer(), nullable=False),
                    sa.Column('period', sa.String(length=16), nullable=False),
                    sa.Column('hour', sa.Integer(), nullable=False),
                    sa.Column('weekday', sa.Integer(), nullable=False),
                    sa.Column('updated_at', sa.DateTime(), nullable=False),
                    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('user_id'))
    op.create_table('report_sends',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('user_id', sa.Integer(), nullable=False),
                    sa.Column('period', sa.String(length=16), nullable=False),
                    sa.Column('period_start', sa.DateTime(), nullable=False),
                    sa.Column('period_end', sa.DateTime(), nullable=False),
                    sa.Column('status', sa.String(length=16), nullable=False),
                    sa.Column('not_before', sa.DateTime(), nullable=False),
                    sa.Column('attempts', sa.Integer(), nullable=False),
                    sa.Column('first_failed_at', sa.DateTime(), nullable=True),
                    sa.Column('last_error', sa.Text(), nullable=True),
                    sa.Column('lease_owner', sa.String(length=64), nullable=True),
                    sa.Column('lease_until', sa.DateTime(), nullable=True),
                    sa.Column('sent_at', sa.DateTime(), nullable=True),
                    sa.Column('created_at', sa.DateTime(), nullable=False),
                    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('user_id', 'period', 'period_start'))
    op.create_index('ix_report_sends_due', 'report_sends', ['status', 'not_before'])


def downgrade() -> None:
    op.drop_index('ix_report_sends_due', table_name='report_sends')
    op.drop_table('report_sends')
    op.drop_table('report_subscriptions')
