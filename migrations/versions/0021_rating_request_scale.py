"""Rating by link: a request keeps the page's scale it was sent with, so a later change of the setting never
reads an answer given on another scale

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('rating_requests', schema=None) as batch:
        batch.add_column(sa.Column('scale', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('rating_requests', schema=None) as batch:
        batch.drop_column('scale')
