"""MANGO quality control: survey state, supervisor marks, question cache, PBX polls, PBX API guard

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recording_unavailable_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('survey', sa.String(length=16), nullable=True))
    with op.batch_alter_table('crm_accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('blocked_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('strike_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('probe_until', sa.Float(), nullable=False, server_default='0'))
    op.create_table('supervisor_marks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('question_id', sa.String(length=64), nullable=False),
    sa.Column('mark', sa.Integer(), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('call_id', 'question_id')
    )
    op.create_table('quality_questions',
    sa.Column('question_id', sa.String(length=64), nullable=False),
    sa.Column('known', sa.Boolean(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('block', sa.String(length=255), nullable=True),
    sa.Column('form', sa.String(length=255), nullable=True),
    sa.Column('fetched_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('question_id')
    )
    op.create_table('pbx_polls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('not_before', sa.DateTime(), nullable=False),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_until', sa.DateTime(), nullable=True),
    sa.Column('found', sa.Boolean(), nullable=False),
    sa.Column('polls', sa.Integer(), nullable=False),
    sa.Column('misses', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('call_id')
    )
    op.create_index('ix_pbx_polls_due', 'pbx_polls', ['status', 'not_before'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_pbx_polls_due', table_name='pbx_polls')
    op.drop_table('pbx_polls')
    op.drop_table('quality_questions')
    op.drop_table('supervisor_marks')
    with op.batch_alter_table('crm_accounts', schema=None) as batch_op:
        batch_op.drop_column('probe_until')
        batch_op.drop_column('strike_at')
        batch_op.drop_column('blocked_until')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('survey')
        batch_op.drop_column('recording_unavailable_until')
