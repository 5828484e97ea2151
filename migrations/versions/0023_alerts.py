"""Alerts (issue #20), the messages' side: one row per call, trigger, person and channel (exactly once), the
one-time codes that link a Telegram chat, and the bot's own state (its name, the next update to read)

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('alert_channels', schema=None) as batch:
        batch.add_column(sa.Column('link_code_hash', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('link_code_until', sa.DateTime(), nullable=True))
        batch.create_unique_constraint('uq_alert_channels_link_code_hash', ['link_code_hash'])
    op.create_table('alerts',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('call_row', sa.Integer(), nullable=False),
                    sa.Column('trigger', sa.String(length=16), nullable=False),
                    sa.Column('user_id', sa.Integer(), nullable=False),
                    sa.Column('channel', sa.String(length=16), nullable=False),
                    sa.Column('status', sa.String(length=16), nullable=False),
                    sa.Column('held_until', sa.DateTime(), nullable=True),
                    sa.Column('job_key', sa.String(length=255), nullable=True),
                    sa.Column('created_at', sa.DateTime(), nullable=False),
                    sa.ForeignKeyConstraint(['call_row'], ['calls.id'], ondelete='CASCADE'),
                    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('call_row', 'trigger', 'user_id', 'channel'))
    op.create_index('ix_alerts_call_row', 'alerts', ['call_row'])
    op.create_index('ix_alerts_held', 'alerts', ['status', 'held_until'])
    op.create_index('ix_alerts_user_recent', 'alerts', ['user_id', 'channel', 'created_at'])
    op.create_table('messenger_accounts',
                    sa.Column('account', sa.String(length=16), nullable=False),
                    sa.Column('bot_username', sa.String(length=64), nullable=True),
                    sa.Column('updates_offset', sa.Integer(), nullable=False),
                    sa.Column('last_error', sa.String(length=255), nullable=True),
                    sa.Column('checked_at', sa.DateTime(), nullable=True),
                    sa.PrimaryKeyConstraint('account'))


def downgrade() -> None:
    op.drop_table('messenger_accounts')
    op.drop_index('ix_alerts_user_recent', table_name='alerts')
    op.drop_index('ix_alerts_held', table_name='alerts')
    op.drop_index('ix_alerts_call_row', table_name='alerts')
    op.drop_table('alerts')
    with op.batch_alter_table('alert_channels', schema=None) as batch:
        batch.drop_constraint('uq_alert_channels_link_code_hash', type_='unique')
        batch.drop_column('link_code_until')
        batch.drop_column('link_code_hash')
