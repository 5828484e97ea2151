"""foundation

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('calls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.String(length=128), nullable=False),
    sa.Column('direction', sa.String(length=10), nullable=True),
    sa.Column('operator_extension', sa.String(length=32), nullable=True),
    sa.Column('customer_phone', sa.String(length=32), nullable=True),
    sa.Column('line_number', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=True),
    sa.Column('forwarded_at', sa.DateTime(), nullable=True),
    sa.Column('talk_started_at', sa.DateTime(), nullable=True),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.Column('talk_seconds', sa.Integer(), nullable=True),
    sa.Column('entry_result', sa.Integer(), nullable=True),
    sa.Column('disconnect_reason', sa.Integer(), nullable=True),
    sa.Column('recording_id', sa.String(length=128), nullable=True),
    sa.Column('last_event_seq', sa.Integer(), nullable=True),
    sa.Column('last_call_state', sa.String(length=32), nullable=True),
    sa.Column('summary_received_at', sa.DateTime(), nullable=True),
    sa.Column('customer_score', sa.Integer(), nullable=True),
    sa.Column('supervisor_score', sa.Integer(), nullable=True),
    sa.Column('decision_record', sa.Boolean(), nullable=False),
    sa.Column('decision_tag', sa.String(length=255), nullable=True),
    sa.Column('decision_reason', sa.String(length=255), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('entry_id')
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calls_customer_score'), ['customer_score'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_ended_at'), ['ended_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_line_number'), ['line_number'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_operator_extension'), ['operator_extension'], unique=False)

    op.create_table('inbound_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('dedupe_key', sa.String(length=64), nullable=False),
    sa.Column('entry_id', sa.String(length=128), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'dedupe_key')
    )
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbound_events_entry_id'), ['entry_id'], unique=False)

    op.create_table('runtime_settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=64), nullable=False),
    sa.Column('values', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('scope')
    )
    op.create_table('settings_audit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=64), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('changed_at', sa.DateTime(), nullable=False),
    sa.Column('before', sa.JSON(), nullable=False),
    sa.Column('after', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('crm_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('crm', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=True),
    sa.Column('entity_type', sa.String(length=16), nullable=True),
    sa.Column('entity_id', sa.Integer(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('call_id', 'crm')
    )
    with op.batch_alter_table('crm_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crm_records_status'), ['status'], unique=False)

    op.create_table('scores',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('raw', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.Column('record', sa.Boolean(), nullable=False),
    sa.Column('tag', sa.String(length=255), nullable=True),
    sa.Column('tag_to_remove', sa.String(length=255), nullable=True),
    sa.Column('operator_extension', sa.String(length=32), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('rated_at', sa.DateTime(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scores_call_id'), ['call_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scores_call_id'))

    op.drop_table('scores')
    with op.batch_alter_table('crm_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crm_records_status'))

    op.drop_table('crm_records')
    op.drop_table('settings_audit')
    op.drop_table('runtime_settings')
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbound_events_entry_id'))

    op.drop_table('inbound_events')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calls_operator_extension'))
        batch_op.drop_index(batch_op.f('ix_calls_line_number'))
        batch_op.drop_index(batch_op.f('ix_calls_ended_at'))
        batch_op.drop_index(batch_op.f('ix_calls_customer_score'))

    op.drop_table('calls')
