"""Throttling of failed logins and bearer tokens: a growing delay, then a lockout of limited length.

Failures are counted in buckets, rows of `login_throttle` shared by every process:

| bucket | counts failures of | free | then waits | locked at | for |
|---|---|---|---|---|---|
| `pair:<user> <address>` | one account from one address | 5 | 1 s, 2 s, 4 s ... 30 s | 10 | 15 min |
| `device:<user> <id>` | one account from a browser it logged in from before (device cookie) | 5 | same | 10 | 15 min |
| `user:<user>` | one account from anywhere (without that account's device cookie) | 10 | ... 60 s | 30 | 5 min |
| `addr:<address>` | any account from one address (without a device cookie) | 10 | ... 60 s | 50 | 15 min |
| `token:<address>` | wrong bearer tokens from one address | 10 | ... 60 s | 100 | 15 min |
| `rating:<link>` | answers posted to one rating link (any, not only refused ones) | 10 | ... 60 s | 30 | 15 min |
| `rating-addr:<address>` | answers posted to any rating link from one address | 60 | ... 60 s | 600 | 15 min |

While a bucket's `blocked_until` holds, an attempt is refused at once (HTTP 429 with Retry-After) without
checking anything and without counting: no thread sleeps, and a flood cannot stretch the delay. A lockout
ends by itself (or an admin lifts it: `connector users unlock`), and failures are forgotten an hour after the
last one. An attacker who fails from elsewhere can lock an account's `user:` bucket for 5 minutes at a time,
but never a browser the user has logged in from before: its device cookie (OWASP's "device cookies") puts
the user in a bucket of their own that only that browser fills. A success empties the account's buckets,
never the address's (else one good account would reset an attacker's counter).

An IPv6 address counts as its /64 (one host usually has the whole prefix).

The rating page (`web.rating`) counts every answer posted, since it has no login to fail: a customer changes
a rating a few times at most, a script thousands. Its address rule is loose because mobile carriers put many
customers behind one address (carrier-grade NAT). Those buckets are not logins: `active` leaves them out of the
console's and the CLI's lockout lists, and they end by themselves.
"""
from __future__ import annotations

import ipaddress
import logging
import random
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from connector.core.models import LoginThrottle

log = logging.getLogger(__name__)


def now() -> datetime:
    """The clock (tests move it)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Rule:
    free: int  # failures without a delay
    cap: float  # the longest delay, seconds
    lock_at: int  # failures that lock the bucket
    lock_seconds: int

    def block(self, failures: int) -> tuple[float, bool]:
        """Seconds until the next attempt after this many failures, and whether that is a lockout."""
        if failures >= self.lock_at:
            return self.lock_seconds, True
        if failures <= self.free:
            return 0.0, False
        return min(2.0 ** (failures - self.free - 1), self.cap), False


RULES = {
    "pair": Rule(free=5, cap=30, lock_at=10, lock_seconds=15 * 60),
    "device": Rule(free=5, cap=30, lock_at=10, lock_seconds=15 * 60),
    "user": Rule(free=10, cap=60, lock_at=30, lock_seconds=5 * 60),
    "addr": Rule(free=10, cap=60, lock_at=50, lock_seconds=15 * 60),
    "token": Rule(free=10, cap=60, lock_at=100, lock_seconds=15 * 60),
    "rating": Rule(free=10, cap=60, lock_at=30, lock_seconds=15 * 60),
    "rating-addr": Rule(free=60, cap=60, lock_at=600, lock_seconds=15 * 60),
}
RATING_PREFIX = "rating"  # the rating page's buckets (`rating:`, `rating-addr:`), not logins
FORGET_AFTER = timedelta(hours=1)  # failures this old (since the last one) no longer count
CACHE_SECONDS = 2.0  # a process trusts what it last read of a bucket this long (an unlock shows within it)


def client_address(raw: str | None) -> str:
    """The bucket name of a client address: IPv4 as is, IPv6 as its /64."""
    try:
        address = ipaddress.ip_address((raw or "").split("%")[0])
    except ValueError:
        return "unknown"
    if address.version == 6:
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def login_keys(username: str, address: str, device: str | None) -> list[str]:
    """The buckets a login attempt is counted in (`device`: the id of this user's device cookie, if any)."""
    username = username[:64]
    if device:
        return [f"device:{username} {device}"]
    return [f"pair:{username} {address}", f"user:{username}", f"addr:{address}"]


def token_keys(address: str) -> list[str]:
    return [f"token:{address}"]


def rating_keys(link: str | None, address: str) -> list[str]:
    """The buckets an answer on the rating page is counted in: its link's (`link`: a digest of the token,
    never the token; None for a malformed one) and its address's."""
    return ([f"rating:{link}"] if link else []) + [f"rating-addr:{address}"]


def _rule(key: str) -> Rule:
    return RULES[key.split(":", 1)[0]]


class _Cache:
    """What this process last read or wrote of buckets: a refused flood needs no database round trip."""

    def __init__(self, size: int = 20_000):
        self._lock = threading.Lock()
        self._blocked: dict[str, tuple[datetime, float]] = {}  # key -> (blocked_until, read at, monotonic)
        self._refreshing: set[str] = set()  # stale keys one asker is reading afresh
        self._size = size

    def get(self, key: str, moment: float) -> datetime | None | bool:
        """blocked_until if known and fresh, None if known not blocked, False if unknown."""
        with self._lock:
            found = self._blocked.get(key)
        if found is None or moment - found[1] > CACHE_SECONDS:
            return False
        return found[0]

    def get_or_refresh(self, key: str, moment: float) -> datetime | None | bool:
        """As `get`, but a copy just gone stale is given to every asker but the first, which is told it is
        unknown (it goes the whole way and reads the bucket afresh): under a flood one request per bucket
        and CACHE_SECONDS does the reading, not every request that arrives meanwhile."""
        with self._lock:
            found = self._blocked.get(key)
            if found is None or moment - found[1] > 2 * CACHE_SECONDS:
                return False
            if moment - found[1] <= CACHE_SECONDS or key in self._refreshing:
                return found[0]
            self._refreshing.add(key)
            return False

    def put(self, key: str, blocked_until: datetime | None, moment: float) -> None:
        with self._lock:
            if len(self._blocked) >= self._size:
                self._blocked.clear()
                self._refreshing.clear()
            self._blocked[key] = (blocked_until, moment)
            self._refreshing.discard(key)

    def forget(self, keys) -> None:
        with self._lock:
            for key in keys:
                self._blocked.pop(key, None)
                self._refreshing.discard(key)

    def clear(self) -> None:
        with self._lock:
            self._blocked.clear()
            self._refreshing.clear()


def _cache(db) -> _Cache:
    """One cache per database (a test's app does not see another's buckets)."""
    cache = getattr(db, "_throttle_cache", None)
    if cache is None:
        cache = db._throttle_cache = _Cache()
    return cache


def _monotonic() -> float:
    import time

    return time.monotonic()


def _known(db, keys: list[str], at: datetime, moment: float, *, early: bool = False) -> tuple[float, list[str]]:
    """The wait this process's fresh copy of the buckets imposes, and the keys it has no fresh copy of
    (`early`: a copy just gone stale still counts for all but one asker)."""
    wait, unknown = 0.0, []
    read = _cache(db).get_or_refresh if early else _cache(db).get
    for key in keys:
        cached = read(key, moment)
        if cached is False:
            unknown.append(key)
        elif cached is not None:
            wait = max(wait, (cached - at).total_seconds())
    return wait, unknown


def known_wait(db, keys: list[str]) -> float:
    """Seconds to wait as far as this process already knows, without a database round trip (0: nothing
    known holds the attempt back; `retry_after` then decides)."""
    return max(_known(db, keys, now(), _monotonic(), early=True)[0], 0.0)


def retry_after(db, keys: list[str]) -> float:
    """Seconds to wait before any of these buckets takes an attempt again; 0: go ahead."""
    at, moment = now(), _monotonic()
    wait, unknown = _known(db, keys, at, moment)
    if unknown and wait <= 0:
        with db.reading() as s:  # a check never waits for the writer lock
            rows = dict(s.execute(select(LoginThrottle.key, LoginThrottle.blocked_until)
                                  .where(LoginThrottle.key.in_(unknown))).all())
        for key in unknown:
            blocked = rows.get(key)
            _cache(db).put(key, blocked if blocked and blocked > at else None, moment)
            if blocked:
                wait = max(wait, (blocked - at).total_seconds())
    return max(wait, 0.0)


def _insert_missing(s: Session, keys: list[str], at: datetime) -> None:
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    s.execute(insert(LoginThrottle).values([{"key": k, "failures": 0, "last_failed_at": at, "locked": False}
                                            for k in keys]).on_conflict_do_nothing())


def record_failure(db, keys: list[str]) -> float:
    """Count a failure in each bucket; returns the delay it now imposes (seconds)."""
    at, moment = now(), _monotonic()
    longest = 0.0
    with db.transaction() as s:
        _insert_missing(s, keys, at)
        rows = s.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(keys)).order_by(LoginThrottle.key)
                         .with_for_update()).all()
        for row in rows:
            stale = at - row.last_failed_at > FORGET_AFTER
            lock_over = row.locked and row.blocked_until is not None and row.blocked_until <= at
            row.failures = (0 if stale or lock_over else row.failures) + 1
            row.last_failed_at = at
            seconds, locked = _rule(row.key).block(row.failures)
            row.blocked_until = at + timedelta(seconds=seconds) if seconds else None
            row.locked = locked
            if locked and not lock_over and row.failures == _rule(row.key).lock_at:
                log.warning("login throttle: %s locked for %d min after %d failures", row.key,
                            seconds // 60, row.failures)
            _cache(db).put(row.key, row.blocked_until, moment)
            longest = max(longest, seconds)
        if random.random() < 0.01:  # now and then, forget buckets nobody failed in for an hour
            _prune(s, at)
    return longest


def record_success(db, keys: list[str]) -> None:
    """A login succeeded: the account's buckets start afresh (the address's do not)."""
    mine = [k for k in keys if not k.startswith(("addr:", "token:"))]
    if not mine:
        return
    with db.transaction() as s:
        s.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(mine)))
    _cache(db).forget(mine)


def _prune(s: Session, at: datetime) -> None:
    s.execute(delete(LoginThrottle).where(LoginThrottle.last_failed_at < at - FORGET_AFTER,
                                          or_(LoginThrottle.blocked_until.is_(None),
                                              LoginThrottle.blocked_until < at)))


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def account_filter(username: str):
    """The buckets of one account: every address, every device, and its own."""
    name = _like(username)
    return or_(LoginThrottle.key == f"user:{username}",
               LoginThrottle.key.like(f"pair:{name} %", escape="\\"),
               LoginThrottle.key.like(f"device:{name} %", escape="\\"))


def address_filter(address: str):
    return LoginThrottle.key.in_([f"addr:{address}", f"token:{address}", f"rating-addr:{address}"])


def active(s: Session, limit: int = 200) -> list[LoginThrottle]:
    """Login and token buckets that hold attempts back now, or counted failures in the last hour; newest first
    (the rating page's are no logins: left out)."""
    at = now()
    return list(s.scalars(select(LoginThrottle)
                          .where(or_(LoginThrottle.blocked_until > at,
                                     LoginThrottle.last_failed_at > at - FORGET_AFTER),
                                 LoginThrottle.key.not_like(f"{RATING_PREFIX}%"))
                          .order_by(LoginThrottle.last_failed_at.desc()).limit(limit)))


def lift(s: Session, condition) -> list[LoginThrottle]:
    """Delete the buckets matching `condition` (an admin's unlock); returns what they held. Processes that
    cached them see the change within CACHE_SECONDS."""
    rows = list(s.scalars(select(LoginThrottle).where(condition)))
    if rows:
        s.execute(delete(LoginThrottle).where(LoginThrottle.key.in_([r.key for r in rows])))
    return rows


def forget_cached(db, keys) -> None:
    _cache(db).forget(keys)


