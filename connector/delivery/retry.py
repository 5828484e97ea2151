"""The retry schedule of a delivery job: pure functions of the attempt and the failure."""
from __future__ import annotations

from datetime import datetime, timedelta

from tenacity import RetryCallState, wait_exponential_jitter

from connector.delivery.contract import RateLimited, TransientError

RETRY_HORIZON = timedelta(hours=24)
# 30 s, 1 min, 2 min, ... capped at 1 h, each with up to 30 s of jitter: ~30 tries in 24 h.
BACKOFF = wait_exponential_jitter(multiplier=30, max=3600, jitter=30)


def backoff_seconds(attempt: int) -> float:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return BACKOFF(state)


def retry_delay(attempt: int, exc: TransientError) -> float:
    """A request refused for the rate alone is sent again when the target says (the job did nothing
    wrong); any other failure waits for the schedule, or longer when the target asks."""
    if isinstance(exc, RateLimited):
        return exc.retry_after
    return max(exc.retry_after or 0.0, backoff_seconds(attempt))


def next_try(first_failed_at: datetime, attempt: int, exc: TransientError, now: datetime) -> datetime | None:
    """When to send again after this failure; None: retried for RETRY_HORIZON already, give up."""
    if now - first_failed_at >= RETRY_HORIZON:
        return None
    return now + timedelta(seconds=retry_delay(attempt, exc))
