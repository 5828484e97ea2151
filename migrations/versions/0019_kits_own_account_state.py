"""Each kit keeps what only it knows about its account in its own table: `crm_accounts` becomes the shared
`accounts` (keyed by `name`: rate slot, pause, OAuth tokens, an endpoint), and MANGO's guard and console
credentials, Bitrix24's portal (member_id, OAuth server, handler registration) and amoCRM's console
connection move to `mango_accounts`, `bitrix24_portals` and `amocrm_connections`, rows and all

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

# (table, the account's name, [(its column, the column in crm_accounts), ...])
MOVED = (
    ('mango_accounts', 'mango', [('blocked_until', 'blocked_until'), ('strike_at', 'strike_at'),
                                 ('probe_until', 'probe_until'), ('api_key_enc', 'api_key_enc'),
                                 ('api_salt_enc', 'api_salt_enc'), ('credentials_saved_at', 'credentials_saved_at')]),
    ('bitrix24_portals', 'bitrix24', [('member_id', 'member_id'), ('oauth_server', 'oauth_server'),
                                      ('events_bound_at', 'events_bound_at'), ('bind_failures', 'bind_failures'),
                                      ('bind_error', 'bind_error'), ('bind_next_at', 'bind_next_at')]),
    ('amocrm_connections', 'amocrm', [('connection_enc', 'connection_enc'), ('saved_at', 'credentials_saved_at'),
                                      ('pending_enc', 'pending_enc')]),
)
DROPPED = ('blocked_until', 'strike_at', 'probe_until', 'api_key_enc', 'api_salt_enc', 'credentials_saved_at',
           'member_id', 'oauth_server', 'events_bound_at', 'bind_failures', 'bind_error', 'bind_next_at',
           'connection_enc', 'pending_enc')


def upgrade() -> None:
    op.create_table('mango_accounts',
                    sa.Column('account', sa.String(length=16), nullable=False),
                    sa.Column('blocked_until', sa.DateTime(), nullable=True),
                    sa.Column('strike_at', sa.DateTime(), nullable=True),
                    sa.Column('probe_until', sa.Float(), nullable=False),
                    sa.Column('api_key_enc', sa.Text(), nullable=True),
                    sa.Column('api_salt_enc', sa.Text(), nullable=True),
                    sa.Column('credentials_saved_at', sa.DateTime(), nullable=True),
                    sa.PrimaryKeyConstraint('account'))
    op.create_table('bitrix24_portals',
                    sa.Column('account', sa.String(length=16), nullable=False),
                    sa.Column('member_id', sa.String(length=64), nullable=True),
                    sa.Column('oauth_server', sa.String(length=255), nullable=True),
                    sa.Column('events_bound_at', sa.DateTime(), nullable=True),
                    sa.Column('bind_failures', sa.Integer(), server_default='0', nullable=False),
                    sa.Column('bind_error', sa.String(length=255), nullable=True),
                    sa.Column('bind_next_at', sa.DateTime(), nullable=True),
                    sa.PrimaryKeyConstraint('account'))
    op.create_table('amocrm_connections',
                    sa.Column('account', sa.String(length=16), nullable=False),
                    sa.Column('connection_enc', sa.Text(), nullable=True),
                    sa.Column('saved_at', sa.DateTime(), nullable=True),
                    sa.Column('pending_enc', sa.Text(), nullable=True),
                    sa.PrimaryKeyConstraint('account'))
    for table, name, columns in MOVED:
        own = ', '.join(mine for mine, _ in columns)
        theirs = ', '.join(old for _, old in columns)
        op.execute(f"INSERT INTO {table} (account, {own}) SELECT crm, {theirs} FROM crm_accounts "
                   f"WHERE crm = '{name}'")
    with op.batch_alter_table('crm_accounts', schema=None) as batch:
        for column in DROPPED:
            batch.drop_column(column)
        batch.alter_column('crm', new_column_name='name', existing_type=sa.String(length=16))
    op.rename_table('crm_accounts', 'accounts')


def downgrade() -> None:
    op.rename_table('accounts', 'crm_accounts')
    with op.batch_alter_table('crm_accounts', schema=None) as batch:
        batch.alter_column('name', new_column_name='crm', existing_type=sa.String(length=16))
        batch.add_column(sa.Column('blocked_until', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('strike_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('probe_until', sa.Float(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('api_key_enc', sa.Text(), nullable=True))
        batch.add_column(sa.Column('api_salt_enc', sa.Text(), nullable=True))
        batch.add_column(sa.Column('credentials_saved_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('member_id', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('oauth_server', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('events_bound_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('bind_failures', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('bind_error', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('bind_next_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('connection_enc', sa.Text(), nullable=True))
        batch.add_column(sa.Column('pending_enc', sa.Text(), nullable=True))
    for table, name, columns in MOVED:
        for mine, old in columns:
            op.execute(f"UPDATE crm_accounts SET {old} = (SELECT {mine} FROM {table} WHERE account = '{name}') "
                       f"WHERE crm = '{name}' AND EXISTS (SELECT 1 FROM {table} WHERE account = '{name}')")
    op.drop_table('amocrm_connections')
    op.drop_table('bitrix24_portals')
    op.drop_table('mango_accounts')
