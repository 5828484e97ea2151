"""amoCRM connected from the console: the connection an admin entered (account address, integration keys or
a long-lived token) and an authorization waiting for amoCRM's redirect, both encrypted in the account's row

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('crm_accounts', schema=None) as batch:
        batch.add_column(sa.Column('connection_enc', sa.Text(), nullable=True))
        batch.add_column(sa.Column('pending_enc', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('crm_accounts', schema=None) as batch:
        batch.drop_column('pending_enc')
        batch.drop_column('connection_enc')
