"""MANGO's credentials entered in the console (encrypted like the CRM tokens), and the operator
directory: the PBX's users (name, extension, groups) read on a schedule, shown instead of bare extensions

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'operators',
        sa.Column('extension', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=True),
        sa.Column('groups', sa.JSON(), nullable=False),
        sa.Column('seen_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('extension'),
    )
    with op.batch_alter_table('crm_accounts', schema=None) as batch:
        batch.add_column(sa.Column('api_key_enc', sa.Text(), nullable=True))
        batch.add_column(sa.Column('api_salt_enc', sa.Text(), nullable=True))
        batch.add_column(sa.Column('credentials_saved_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('pbx_scans', schema=None) as batch:
        batch.add_column(sa.Column('failures', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('pbx_scans', schema=None) as batch:
        batch.drop_column('failures')
    with op.batch_alter_table('crm_accounts', schema=None) as batch:
        batch.drop_column('credentials_saved_at')
        batch.drop_column('api_salt_enc')
        batch.drop_column('api_key_enc')
    op.drop_table('operators')
