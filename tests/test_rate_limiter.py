"""The shared limiter keeps requests apart as they are sent, not only as they were planned."""
from connector.accounts import SharedRateLimiter


class Clock:
    def __init__(self, start: float = 1000.0):
        self.now = start
        self.late_by = 0.0  # how much later than asked the next sleep wakes up

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds + self.late_by
        self.late_by = 0.0


def sends(limiter, clock, count: int, late: dict | None = None) -> list[float]:
    times = []
    for n in range(count):
        clock.late_by = (late or {}).get(n, 0.0)
        limiter.wait_turn()
        times.append(clock.now)
    return times


def test_requests_are_spaced_just_wider_than_the_rate(db):
    clock = Clock()
    limiter = SharedRateLimiter(db, "amocrm", 7, sleep=clock.sleep, clock=clock)
    times = sends(limiter, clock, 15)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(abs(g - 1 / (7 * SharedRateLimiter.HEADROOM)) < 1e-6 for g in gaps)
    assert max(sum(1 for t in times if start <= t < start + 1) for start in times) == 7


def test_a_caller_woken_late_pushes_the_next_slot(db):
    clock = Clock()
    limiter = SharedRateLimiter(db, "amocrm", 7, sleep=clock.sleep, clock=clock)
    times = sends(limiter, clock, 15, late={3: 0.08, 9: 0.12})  # a busy process: two late wake-ups
    gaps = [b - a for a, b in zip(times, times[1:])]
    # The request after a late one still keeps its distance.
    assert min(gaps) >= 1 / (7 * SharedRateLimiter.HEADROOM) - 1e-6
    assert max(sum(1 for t in times if start <= t < start + 1) for start in times) <= 7
