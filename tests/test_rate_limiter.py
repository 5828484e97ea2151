"""The shared limiter keeps requests apart as they are sent, not only as they were planned."""
from connector.core.accounts import SharedRateLimiter


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


def test_a_caller_woken_late_never_goes_right_beside_a_slot_another_process_reserved(db):
    """Two processes: while the first sleeps towards its slot, the second reserves the next one; the first
    wakes 80 ms late. Going then would put the two requests 73 ms apart (8 within one second)."""
    clock = Clock()
    first = SharedRateLimiter(db, "amocrm", 7, sleep=clock.sleep, clock=clock)
    second = SharedRateLimiter(db, "amocrm", 7, sleep=clock.sleep, clock=clock)
    first.wait_turn()  # the slot is taken: the next caller sleeps
    sent = [clock.now]
    reserved = []
    real_sleep = clock.sleep

    def sleep_late_while_the_other_reserves(seconds: float) -> None:
        clock.sleep = real_sleep
        reserved.append(second.reserve()[0])
        clock.late_by = 0.08
        real_sleep(seconds)

    clock.sleep = sleep_late_while_the_other_reserves
    first.sleep = lambda seconds: clock.sleep(seconds)
    first.wait_turn()
    sent.append(clock.now)
    interval = 1 / (7 * SharedRateLimiter.HEADROOM)
    assert abs(sent[1] - reserved[0]) >= interval - 1e-6  # apart from the other process's request
    assert sent[1] - sent[0] >= interval - 1e-6
