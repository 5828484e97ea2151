"""What the benchmarks share."""
from __future__ import annotations

from sqlalchemy import create_engine, text


def wipe_postgres(url: str) -> None:
    """An empty schema for a benchmark run: everything in the given database is dropped."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
