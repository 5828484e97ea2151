"""Why the last scan of the PBX's call statistics failed, as a code the console names in people's words
(`last_error` keeps the technical text for the API and the logs)

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('pbx_scans', schema=None) as batch:
        batch.add_column(sa.Column('last_problem', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('pbx_scans', schema=None) as batch:
        batch.drop_column('last_problem')
