"""The follow-up loop (issue #20, part 2): one follow-up per call that got a low (tagged) customer score, its due
time, the CRM task it tracks and what reading it back found, and a supervisor's closing in the console

Revision ID: 0025
Revises: 0024
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('follow_ups',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('call_row', sa.Integer(), nullable=False),
                    sa.Column('score_id', sa.Integer(), nullable=True),
                    sa.Column('status', sa.String(length=16), nullable=False),
                    sa.Column('opened_at', sa.DateTime(), nullable=False),
                    sa.Column('due_at', sa.DateTime(), nullable=False),
                    sa.Column('done_at', sa.DateTime(), nullable=True),
                    sa.Column('target', sa.String(length=16), nullable=True),
                    sa.Column('task_id', sa.String(length=64), nullable=True),
                    sa.Column('task_state', sa.String(length=16), nullable=True),
                    sa.Column('crm_result', sa.Text(), nullable=True),
                    sa.Column('crm_completed_at', sa.DateTime(), nullable=True),
                    sa.Column('checked_at', sa.DateTime(), nullable=True),
                    sa.Column('last_error', sa.String(length=255), nullable=True),
                    sa.Column('read_failures', sa.Integer(), server_default='0', nullable=False),
                    sa.Column('closed_by', sa.String(length=64), nullable=True),
                    sa.Column('closed_at', sa.DateTime(), nullable=True),
                    sa.Column('outcome', sa.String(length=16), nullable=True),
                    sa.Column('note', sa.String(length=500), nullable=True),
                    sa.Column('updated_at', sa.DateTime(), nullable=False),
                    sa.ForeignKeyConstraint(['call_row'], ['calls.id'], ondelete='CASCADE'),
                    sa.ForeignKeyConstraint(['score_id'], ['scores.id'], ondelete='SET NULL'),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('call_row'))
    op.create_index('ix_follow_ups_status_due', 'follow_ups', ['status', 'due_at'])
    op.create_index('ix_follow_ups_reading', 'follow_ups', ['target', 'status', 'checked_at'])


def downgrade() -> None:
    op.drop_index('ix_follow_ups_reading', table_name='follow_ups')
    op.drop_index('ix_follow_ups_status_due', table_name='follow_ups')
    op.drop_table('follow_ups')
