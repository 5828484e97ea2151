"""Rating by link: the requests sent by SMS after calls the IVR survey missed, and the do-not-contact list

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rating_requests',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('call_row', sa.Integer(), nullable=False),
                    sa.Column('number', sa.String(length=32), nullable=False),
                    sa.Column('line_number', sa.String(length=32), nullable=True),
                    sa.Column('status', sa.String(length=16), nullable=False),
                    sa.Column('reason', sa.String(length=32), nullable=True),
                    sa.Column('detail', sa.String(length=255), nullable=True),
                    sa.Column('due_at', sa.DateTime(), nullable=False),
                    sa.Column('expires_at', sa.DateTime(), nullable=False),
                    sa.Column('token_hash', sa.String(length=64), nullable=True),
                    sa.Column('command_id', sa.String(length=64), nullable=True),
                    sa.Column('from_extension', sa.String(length=32), nullable=True),
                    sa.Column('queued_at', sa.DateTime(), nullable=True),
                    sa.Column('sent_at', sa.DateTime(), nullable=True),
                    sa.Column('delivered_at', sa.DateTime(), nullable=True),
                    sa.Column('opened_at', sa.DateTime(), nullable=True),
                    sa.Column('rated_at', sa.DateTime(), nullable=True),
                    sa.Column('rating', sa.Integer(), nullable=True),
                    sa.Column('comment', sa.Text(), nullable=True),
                    sa.Column('created_at', sa.DateTime(), nullable=False),
                    sa.Column('updated_at', sa.DateTime(), nullable=False),
                    sa.ForeignKeyConstraint(['call_row'], ['calls.id']),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('call_row'),
                    sa.UniqueConstraint('command_id'),
                    sa.UniqueConstraint('token_hash'))
    op.create_index('ix_rating_requests_status_due', 'rating_requests', ['status', 'due_at'])
    op.create_index('ix_rating_requests_number_sent', 'rating_requests', ['number', 'queued_at'])
    op.create_table('do_not_contact',
                    sa.Column('number', sa.String(length=32), nullable=False),
                    sa.Column('source', sa.String(length=16), nullable=False),
                    sa.Column('actor', sa.String(length=64), nullable=True),
                    sa.Column('added_at', sa.DateTime(), nullable=False),
                    sa.PrimaryKeyConstraint('number'))


def downgrade() -> None:
    op.drop_table('do_not_contact')
    op.drop_index('ix_rating_requests_number_sent', table_name='rating_requests')
    op.drop_index('ix_rating_requests_status_due', table_name='rating_requests')
    op.drop_table('rating_requests')
