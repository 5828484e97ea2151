"""Server-side console sessions, login/token throttling, personal tokens with an expiry, a name, their last
use and one-by-one revocation (tokens issued before get 90 days from the upgrade)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27
"""
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'console_sessions',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_console_sessions_user_id', 'console_sessions', ['user_id'])
    op.create_table(
        'login_throttle',
        sa.Column('key', sa.String(length=160), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('last_failed_at', sa.DateTime(), nullable=False),
        sa.Column('blocked_until', sa.DateTime(), nullable=True),
        sa.Column('locked', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch:
        batch.add_column(sa.Column('name', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('expires_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('last_used_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('revoked_at', sa.DateTime(), nullable=True))
    # Tokens issued before never expired: they get the default lifetime from now, not from their issue.
    expires = (datetime.now(timezone.utc) + timedelta(days=90)).replace(tzinfo=None)
    op.execute(sa.text("UPDATE api_tokens SET expires_at = :at").bindparams(at=expires))
    with op.batch_alter_table('api_tokens', schema=None) as batch:
        batch.alter_column('expires_at', existing_type=sa.DateTime(), nullable=False)


def downgrade() -> None:
    # The older schema cannot tell a revoked or expired token from a good one: they go.
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    op.execute(sa.text("DELETE FROM api_tokens WHERE revoked_at IS NOT NULL OR expires_at <= :now")
               .bindparams(now=now))
    with op.batch_alter_table('api_tokens', schema=None) as batch:
        batch.drop_column('revoked_at')
        batch.drop_column('last_used_at')
        batch.drop_column('expires_at')
        batch.drop_column('name')
    op.drop_table('login_throttle')
    op.drop_index('ix_console_sessions_user_id', table_name='console_sessions')
    op.drop_table('console_sessions')
