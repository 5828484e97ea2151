"""What the CRM gets for a score at or above the threshold: the policy's rule (ignore, record, or each
target's default) kept with each decision. Decisions taken before it were all "record" (the score text
without a tag), so those at or above their threshold (recorded, untagged) say so.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.add_column(sa.Column('high_scores', sa.String(length=8), nullable=True))
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('decision_high_scores', sa.String(length=8), nullable=True))
    # A recorded customer score without a tag is one at or above the threshold (only those get none).
    op.execute("UPDATE scores SET high_scores = 'record' WHERE source = 'customer' AND status = 'accepted' "
               "AND record AND tag IS NULL AND value IS NOT NULL")
    op.execute("UPDATE calls SET decision_high_scores = 'record' WHERE decision_record AND decision_tag IS NULL "
               "AND customer_score IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('decision_high_scores')
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.drop_column('high_scores')
