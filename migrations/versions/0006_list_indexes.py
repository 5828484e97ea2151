"""QA lists on millions of calls: stored sort and CRM-status columns, indexes that match the sort and filters

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

TAGGED = sa.text('decision_tag IS NOT NULL')


def upgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('listed_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('crm_status', sa.String(length=16), nullable=True))
    op.execute("UPDATE calls SET listed_at = COALESCE(created_at, first_seen_at)")
    op.execute("UPDATE calls SET crm_status = (SELECT r.status FROM crm_records r WHERE r.call_id = calls.id "
               "ORDER BY r.id LIMIT 1)")
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.alter_column('listed_at', existing_type=sa.DateTime(), nullable=False)
        batch_op.drop_index('ix_calls_customer_score')
        batch_op.drop_index('ix_calls_ended_at')
        batch_op.drop_index('ix_calls_line_number')
        batch_op.drop_index('ix_calls_operator_extension')
    op.create_index('ix_calls_listed', 'calls', ['listed_at', 'id'])
    op.create_index('ix_calls_operator_listed', 'calls', ['operator_extension', 'listed_at', 'id', 'customer_score'])
    op.create_index('ix_calls_line_listed', 'calls', ['line_number', 'listed_at', 'id', 'customer_score'])
    op.create_index('ix_calls_score_listed', 'calls', ['customer_score', 'listed_at', 'id'])
    op.create_index('ix_calls_crm_status_listed', 'calls', ['crm_status', 'listed_at', 'id'])
    op.create_index('ix_calls_tagged_listed', 'calls', ['listed_at', 'id'], sqlite_where=TAGGED,
                    postgresql_where=TAGGED)
    with op.batch_alter_table('crm_records', schema=None) as batch_op:
        batch_op.drop_index('ix_crm_records_status')
    op.create_index('ix_crm_records_status_call', 'crm_records', ['status', 'call_id'])


def downgrade() -> None:
    op.drop_index('ix_crm_records_status_call', table_name='crm_records')
    with op.batch_alter_table('crm_records', schema=None) as batch_op:
        batch_op.create_index('ix_crm_records_status', ['status'], unique=False)
    op.drop_index('ix_calls_tagged_listed', table_name='calls', sqlite_where=TAGGED, postgresql_where=TAGGED)
    for name in ('ix_calls_crm_status_listed', 'ix_calls_score_listed', 'ix_calls_line_listed', 'ix_calls_operator_listed', 'ix_calls_listed'):
        op.drop_index(name, table_name='calls')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index('ix_calls_operator_extension', ['operator_extension'], unique=False)
        batch_op.create_index('ix_calls_line_number', ['line_number'], unique=False)
        batch_op.create_index('ix_calls_ended_at', ['ended_at'], unique=False)
        batch_op.create_index('ix_calls_customer_score', ['customer_score'], unique=False)
        batch_op.drop_column('crm_status')
        batch_op.drop_column('listed_at')
