"""QA list benchmark: `GET /api/v1/calls` on 1,000,000 calls in PostgreSQL, every filter and sort, at page 1
and at a deep page (the keyset cursor of `_links.next`, half-way down the list), beside a unique-key
look-up (`GET /api/v1/calls/<call_id>`) measured in the same run.

    .venv/bin/python bench/query.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench

The database given is wiped and seeded with SQL (about a minute). Requests go through the Flask app in
process, JSON included, so the figures are the API's own time without the network.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

SEED = """
INSERT INTO calls (entry_id, direction, operator_extension, customer_phone, line_number, created_at, ended_at,
                   talk_seconds, entry_result, customer_score, decision_record, decision_tag, survey,
                   first_seen_at, listed_at, updated_at)
SELECT 'seed-' || g, 'inbound', (100 + g % 50)::text, '7900' || lpad((g % 10000000)::text, 7, '0'),
       '7495000000' || (g % 5), ts, ts + interval '2 minutes', 120, 1,
       CASE WHEN g % 4 = 0 THEN NULL ELSE 1 + g % 10 END, g % 4 <> 0,
       CASE WHEN g % 4 <> 0 AND 1 + g % 10 < 9 THEN 'Оценка ' || (1 + g % 10) END,
       CASE WHEN g % 4 = 0 THEN 'not_offered' ELSE 'answered' END, ts, ts, ts
FROM (SELECT g, timestamp '2025-01-01' + g * interval '30 seconds' AS ts FROM generate_series(1, :n) AS g) AS s;
INSERT INTO crm_records (call_id, crm, status, attempts, updated_at)
SELECT id, 'amocrm', CASE WHEN id % 997 = 0 THEN 'dead' WHEN id % 13 = 0 THEN 'pending' ELSE 'delivered' END,
       1, now()
FROM calls;
UPDATE calls SET crm_status = r.status FROM crm_records r WHERE r.call_id = calls.id;
"""

FILTERS = ["", "score_lte=3", "score_gte=9", "operator=120", "line=74950000003", "tagged=true", "tagged=false",
           "crm_status=dead", "crm_status=pending", "date_from=2025-03-01T00:00:00Z&date_to=2025-03-08T00:00:00Z",
           "line=74950000001&date_from=2025-03-01T00:00:00Z&date_to=2025-04-01T00:00:00Z",
           "operator=101&score_lte=3", "sort=oldest", "sort=lowest_score", "sort=highest_score",
           "operator=120&sort=lowest_score", "score_lte=3&sort=highest_score"]


def seed(url: str, n: int) -> None:
    from connector.core.db import upgrade

    from bench.common import wipe_postgres

    wipe_postgres(url)
    upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in SEED.split(";"):
            if statement.strip():
                conn.execute(text(statement), {"n": n})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def timed(client, path: str, headers: dict, repetitions: int) -> list[float]:
    out = []
    for _ in range(repetitions):
        start = time.perf_counter()
        response = client.get(path, headers=headers)
        out.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (path, response.json)
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repetitions", type=int, default=30)
    parser.add_argument("--no-seed", action="store_true", help="reuse the seeded database")
    args = parser.parse_args()
    if not args.no_seed:
        started = time.monotonic()
        seed(args.database_url, args.calls)
        print(f"seeded {args.calls:,} calls in {time.monotonic() - started:.0f} s")

    from app import create_app
    from connector.core.calls import Cursor
    from connector.core.config import Config

    config = Config.from_env({"DATABASE_URL": args.database_url, "ADMIN_TOKEN": "bench-admin-token-Jr5mQ9wT3xC7vN2kL8pZ4hB6", "SECRET_KEY": "bench"})
    app = create_app(config)
    client, headers = app.test_client(), {"Authorization": "Bearer bench-admin-token-Jr5mQ9wT3xC7vN2kL8pZ4hB6"}
    with create_engine(args.database_url).connect() as conn:
        middle = conn.execute(text("SELECT listed_at, id, customer_score FROM calls WHERE entry_id = :e"),
                              {"e": f"seed-{args.calls // 2 + 1}"}).one()  # a rated call, half-way down
    from datetime import timezone

    deep = Cursor(middle[0].replace(tzinfo=timezone.utc), middle[1], middle[2]).encode()  # any sort reads it

    anchor = timed(client, f"/api/v1/calls/seed-{args.calls // 3}", headers, args.repetitions)
    print(f"{'GET /api/v1/calls?...':<72} {'page 1 p50/p95 ms':>18} {'deep p50/p95 ms':>17}")
    print(f"{'anchor: one call by its id (unique key)':<72} {pct(anchor, 50):8.1f} {pct(anchor, 95):7.1f}")
    worst = 0.0
    for query in FILTERS:
        first = timed(client, f"/api/v1/calls?{query}", headers, args.repetitions)
        deeper = timed(client, f"/api/v1/calls?{query}{'&' if query else ''}after={deep}", headers,
                       args.repetitions)
        worst = max(worst, pct(first, 95), pct(deeper, 95))
        print(f"{query or '(no filter)':<72} {pct(first, 50):8.1f} {pct(first, 95):7.1f}"
              f" {pct(deeper, 50):8.1f} {pct(deeper, 95):7.1f}")
    print(f"worst p95: {worst:.1f} ms (target < 100 ms); anchor p50 {statistics.median(anchor):.1f} ms")


if __name__ == "__main__":
    main()
