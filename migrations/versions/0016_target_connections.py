"""Bitrix24 and the outbound webhook connected from the console: the Bitrix24 portal that installed the
application (its address, member_id and application_token), the webhook's URL and signing secret

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('crm_accounts', schema=None) as batch:
        batch.add_column(sa.Column('endpoint_url', sa.Text(), nullable=True))
        batch.add_column(sa.Column('member_id', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('secret_enc', sa.Text(), nullable=True))
        batch.add_column(sa.Column('connected_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('crm_accounts', schema=None) as batch:
        batch.drop_column('connected_at')
        batch.drop_column('secret_enc')
        batch.drop_column('member_id')
        batch.drop_column('endpoint_url')
