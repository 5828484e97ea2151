"""Alerts (issue #20), the people's side: a console user's e-mail address, the routes that send a line's or an
operator group's alerts to a supervisor, and each person's channels (on/off, muted until, refused by the
messenger, a Telegram chat)

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch:
        batch.add_column(sa.Column('email', sa.String(length=254), nullable=True))
    op.create_table('alert_routes',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('user_id', sa.Integer(), nullable=False),
                    sa.Column('line_number', sa.String(length=32), nullable=False, server_default=''),
                    sa.Column('operator_group', sa.String(length=64), nullable=False, server_default=''),
                    sa.Column('created_at', sa.DateTime(), nullable=False),
                    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('user_id', 'line_number', 'operator_group'))
    op.create_table('alert_channels',
                    sa.Column('user_id', sa.Integer(), nullable=False),
                    sa.Column('channel', sa.String(length=16), nullable=False),
                    sa.Column('enabled', sa.Boolean(), nullable=False),
                    sa.Column('muted_until', sa.DateTime(), nullable=True),
                    sa.Column('refused', sa.String(length=255), nullable=True),
                    sa.Column('address', sa.String(length=64), nullable=True),
                    sa.Column('updated_at', sa.DateTime(), nullable=False),
                    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('user_id', 'channel'))


def downgrade() -> None:
    op.drop_table('alert_channels')
    op.drop_table('alert_routes')
    with op.batch_alter_table('users', schema=None) as batch:
        batch.drop_column('email')
