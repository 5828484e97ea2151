"""Copies of recordings that a target still has to download (the portal fetches the file inside its
request; the PBX hands out a few files a second): fetched ahead at the PBX's pace, served from here,
deleted once nothing waits for them

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'recording_copies',
        sa.Column('recording_id', sa.String(length=128), nullable=False),
        sa.Column('body', sa.LargeBinary(), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('content_type', sa.String(length=64), nullable=False),
        sa.Column('fetched_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('recording_id'),
    )
    with op.batch_alter_table('calls', schema=None) as batch:
        batch.add_column(sa.Column('recording_copy_tried_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch:
        batch.drop_column('recording_copy_tried_at')
    op.drop_table('recording_copies')
