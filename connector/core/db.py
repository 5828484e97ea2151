"""Engine and sessions. SQLite (WAL) by default; PostgreSQL through DATABASE_URL.

Two kinds of transaction:
- `transaction()` and `write_statement()` write, and on SQLite the threads of one process queue for the write
  lock on `Database._writer`. A transaction takes SQLite's lock at BEGIN (BEGIN IMMEDIATE); `write_statement`
  is the webhook's: one statement that is its own transaction (no BEGIN, no COMMIT), on PostgreSQL one round trip.
- `reading()` only reads, and never waits for a writer nor makes one wait: on SQLite a deferred BEGIN
  on a connection that cannot write (`PRAGMA query_only`), a WAL snapshot taken at its first read, and
  never the process's writer lock; on PostgreSQL `REPEATABLE READ, READ ONLY`. Exports, reports, pages,
  API reads and the password check read this way, so the webhook's commit never queues behind them.
"""
from __future__ import annotations

import os

import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from sqlalchemy import Select, create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def make_engine(url: str) -> Engine:
    # hide_parameters: an error's text names the statement, never its values (callers' numbers).
    if make_url(url).get_backend_name() == "sqlite":
        keep_private(url)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own BEGIN handling defers locks; take the write lock at BEGIN so
        # concurrent writers queue on busy_timeout instead of failing mid-transaction.
        # A read (`Database.reading`) begins deferred on a connection that cannot write.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


READING = "connector_reading"  # the execution option that marks `Database.reading`'s connections
ONE_STATEMENT = "connector_one_statement"  # ... and `Database.write_statement`'s: its statement commits itself


def _sqlite_begin(conn) -> None:
    # Straight to the driver: this runs for every transaction, the webhook's included.
    dbapi = conn.connection.dbapi_connection
    options = conn.get_execution_options()
    reading = bool(options.get(READING))
    info = conn.connection.info
    if info.get("query_only") != reading:  # pooled connections serve both: switch only when it changes
        dbapi.execute(f"PRAGMA query_only={'ON' if reading else 'OFF'}")
        info["query_only"] = reading
    if options.get(ONE_STATEMENT):
        return  # no BEGIN: the statement is its own transaction, taking and leaving the write lock itself
    # Deferred: in WAL it takes no lock at all, only a snapshot at its first read.
    dbapi.execute("BEGIN" if reading else "BEGIN IMMEDIATE")


class NotWal(RuntimeError):
    """SQLite refused WAL (e.g. a network file system): readers would block the webhook's writes."""


def _sqlite_pragmas(dbapi_connection, record) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see make_engine)
    cursor = dbapi_connection.cursor()
    # WAL is what lets a reader keep its snapshot while the webhook commits: without it a reader's
    # SHARED lock stops every commit. Check that SQLite took it (it answers the mode now in force).
    mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode.lower() != "wal" and mode.lower() != "memory":  # ":memory:" has no WAL and no other process
        cursor.close()
        raise NotWal(f"SQLite database refused journal_mode=WAL (it is {mode}): put it on a local disk")
    # A long read keeps the WAL from restarting; once it ends, the file is cut back to this size.
    cursor.execute("PRAGMA journal_size_limit=67108864")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Reads share the pool. On PostgreSQL the options are set on the connection for the read and
        # reset when it goes back to the pool; on SQLite `_sqlite_begin` reads the marker.
        reads = ({"isolation_level": "REPEATABLE READ", "postgresql_readonly": True} if self.is_postgres
                 else {READING: True})
        self._read_engine = self.engine.execution_options(**reads)
        self._reads = sessionmaker(self._read_engine, expire_on_commit=False, info={READING: True})
        # SQLite has one writer at a time, and every transaction here takes the write lock at BEGIN.
        # Threads of one process queue on this lock, handed over at once, instead of on SQLite's
        # busy handler, which sleeps 1, 2, 5, 10 ms... between tries (half of a busy webhook's time).
        self._writer = nullcontext() if self.is_postgres else threading.RLock()
        # The webhook's one statement, its own transaction. PostgreSQL: in autocommit (no BEGIN and COMMIT round
        # trips), on a pool of its own without the ping before each use (one more round trip); a connection found
        # dead is met by `write_statement` instead. SQLite: `_sqlite_begin` leaves out the BEGIN.
        self._statements = (create_engine(url, hide_parameters=True, isolation_level="AUTOCOMMIT")
                            if self.is_postgres else self.engine.execution_options(**{ONE_STATEMENT: True}))

    @property
    def engines(self) -> tuple[Engine, ...]:
        """Every engine this database's statements run on (for what watches them all, such as a count)."""
        return (self.engine, self._statements) if self.is_postgres else (self.engine,)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back on any error."""
        with self._writer, self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only transaction, one snapshot from its first read to its end; it never takes the
        writer lock, so a webhook's commit never waits for it (nor it for one). Anything it tries to
        write fails (SQLite: query_only; PostgreSQL: READ ONLY). Keep it short: a long one keeps SQLite's
        WAL from being checkpointed back to its start, and PostgreSQL's vacuum from old row versions."""
        with self._reads() as session, session.begin():
            yield session

    def write_statement(self, work: Callable[[Connection], T]) -> T:
        """`work(connection)` runs ONE write statement on a plain connection (a hot path that needs no ORM: the
        webhook's insert), committed when it returns; what it returns. On PostgreSQL the statement commits
        itself; a pooled connection the server dropped (a restart) fails before anything is written, and the
        statement is sent once more on a new one (were it written after all, the webhook's insert would find it
        there: a duplicate, acknowledged as one). On SQLite too the statement is its own transaction (no BEGIN
        IMMEDIATE, no COMMIT: each a trip through the driver that lets other threads take the interpreter),
        under the process's writer lock as any write."""
        if not self.is_postgres:
            with self._writer, self._statements.begin() as conn:
                return work(conn)
        try:
            with self._statements.connect() as conn:
                return work(conn)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        with self._statements.connect() as conn:  # the pool was emptied of the dead ones
            return work(conn)

    def ping(self) -> bool:
        with self._read_engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar() == 1

    def dispose(self) -> None:
        self.engine.dispose()
        if self.is_postgres:
            self._statements.dispose()


def get_or_create(session: Session, query: Select, make):
    """The row `query` finds, inserting `make()` first when there is none.

    A concurrent transaction may insert the same unique row first: the savepoint
    absorbs our failed insert and the query then finds theirs. In a read (`Database.reading`) a
    missing row is `make()` as it would be inserted, and nothing is written.
    """
    row = session.scalars(query).first()
    if row is None and session.info.get(READING):
        return make()
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


def keep_private(url: str) -> None:
    """The embedded database holds callers' numbers and tokens' hashes: only its owner may read it. Its file
    is made 0600 before SQLite first opens it (SQLite gives its WAL and shared-memory files the same
    permissions), and one made earlier with looser ones is narrowed. Nothing for another database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return
    path = Path(parsed.database)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists() and file.stat().st_mode & 0o077:
            file.chmod(0o600)


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    keep_private(url)  # migrations open the file with alembic's own engine, perhaps first
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)
