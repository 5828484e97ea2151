"""Bitrix24: the OAuth server that issues the installed portal's tokens (the origin of the install's
`auth[server_endpoint]`), and the registration of the connector's handler for ONAPPUNINSTALL (`event.bind`):
when it succeeded, or how often it failed, why, and when it is tried again

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('crm_accounts', schema=None) as batch:
        batch.add_column(sa.Column('oauth_server', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('events_bound_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('bind_failures', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('bind_error', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('bind_next_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('crm_accounts', schema=None) as batch:
        batch.drop_column('bind_next_at')
        batch.drop_column('bind_error')
        batch.drop_column('bind_failures')
        batch.drop_column('events_bound_at')
        batch.drop_column('oauth_server')
