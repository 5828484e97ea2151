"""The embedded database holds callers' numbers and tokens' hashes: only its owner may read its files."""
import stat

from sqlalchemy import text

from connector.core.db import Database, upgrade


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_embedded_database_and_its_wal_are_private(tmp_path):
    path = tmp_path / "data" / "connector.db"
    upgrade(f"sqlite:///{path}")
    db = Database(f"sqlite:///{path}")
    try:
        with db.transaction() as s:
            s.execute(text("CREATE TABLE IF NOT EXISTS probe (x INTEGER)"))
            s.execute(text("INSERT INTO probe VALUES (1)"))
        assert mode(path) == 0o600
        for companion in (path.with_name("connector.db-wal"), path.with_name("connector.db-shm")):
            assert not companion.exists() or mode(companion) == 0o600
    finally:
        db.dispose()


def test_a_database_made_readable_by_others_is_narrowed(tmp_path):
    path = tmp_path / "connector.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    db = Database(f"sqlite:///{path}")
    db.dispose()
    assert mode(path) == 0o600
