"""delivery outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('crm_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('crm', sa.String(length=16), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('paused_reason', sa.String(length=255), nullable=True),
    sa.Column('paused_at', sa.DateTime(), nullable=True),
    sa.Column('access_token_enc', sa.Text(), nullable=True),
    sa.Column('refresh_token_enc', sa.Text(), nullable=True),
    sa.Column('token_expires_at', sa.DateTime(), nullable=True),
    sa.Column('next_request_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('crm')
    )
    op.create_table('delivery_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('crm', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('score_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('not_before', sa.DateTime(), nullable=False),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_until', sa.DateTime(), nullable=True),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('first_failed_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['score_id'], ['scores.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('crm', 'key')
    )
    with op.batch_alter_table('delivery_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_jobs_call_id'), ['call_id'], unique=False)
        batch_op.create_index('ix_delivery_jobs_due', ['status', 'not_before'], unique=False)

    with op.batch_alter_table('crm_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('responsible_user_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('responsible_mapped', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('written_score', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('logged_at', sa.DateTime(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('crm_records', schema=None) as batch_op:
        batch_op.drop_column('logged_at')
        batch_op.drop_column('written_score')
        batch_op.drop_column('responsible_mapped')
        batch_op.drop_column('responsible_user_id')

    with op.batch_alter_table('delivery_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_jobs_due')
        batch_op.drop_index(batch_op.f('ix_delivery_jobs_call_id'))

    op.drop_table('delivery_jobs')
    op.drop_table('crm_accounts')
