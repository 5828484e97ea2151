"""Engine and sessions. SQLite (WAL) by default; PostgreSQL through DATABASE_URL."""
from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

from sqlalchemy import Select, create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str) -> Engine:
    # hide_parameters: an error's text names the statement, never its values (callers' numbers).
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own BEGIN handling defers locks; take the write lock at BEGIN so
        # concurrent writers queue on busy_timeout instead of failing mid-transaction.
        event.listen(engine, "begin", _begin_immediate)
        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def _begin_immediate(conn) -> None:
    # Straight to the driver: this runs for every transaction, the webhook's included.
    conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see make_engine)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time, and every transaction here takes the write lock at BEGIN.
        # Threads of one process queue on this lock, handed over at once, instead of on SQLite's
        # busy handler, which sleeps 1, 2, 5, 10 ms... between tries (half of a busy webhook's time).
        self._writer = nullcontext() if self.is_postgres else threading.RLock()

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back on any error."""
        with self._writer, self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A transaction on a plain connection, for a hot path that needs no ORM (the webhook's insert)."""
        with self._writer, self.engine.begin() as conn:
            yield conn

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar() == 1

    def dispose(self) -> None:
        self.engine.dispose()


def get_or_create(session: Session, query: Select, make):
    """The row `query` finds, inserting `make()` first when there is none.

    A concurrent transaction may insert the same unique row first: the savepoint
    absorbs our failed insert and the query then finds theirs.
    """
    row = session.scalars(query).first()
    if row is None:
        try:
            with session.begin_nested():
                session.add(make())
        except IntegrityError:
            pass
        row = session.scalars(query).one()
    return row


def alembic_config(url: str):
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)
