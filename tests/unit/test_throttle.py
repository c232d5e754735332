"""The failed-authentication window: N failures of a key id or an address refuse the next
try for the rest of the window, then it slides (a test clock, no waiting)."""

from __future__ import annotations

from tally.domain.throttle import FailureLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_refused_after_its_failures_until_the_window_slides() -> None:
    clock = Clock()
    limiter = FailureLimiter(per_key=0, per_address=3, window_s=60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after(None, "10.0.0.1") is None
        limiter.failed(None, "10.0.0.1")
        clock.now += 10
    assert limiter.retry_after(None, "10.0.0.1") == 30  # the first failure leaves at 1060
    assert limiter.retry_after(None, "10.0.0.2") is None  # another client
    clock.now += 30
    assert limiter.retry_after(None, "10.0.0.1") is None  # two failures left in the window
    limiter.failed(None, "10.0.0.1")
    assert limiter.retry_after(None, "10.0.0.1") == 10


def test_a_key_id_is_refused_from_every_address() -> None:
    clock = Clock()
    limiter = FailureLimiter(per_key=2, per_address=100, window_s=60, clock=clock)
    limiter.failed("0123456789ab", "10.0.0.1")
    limiter.failed("0123456789ab", "10.0.0.2")
    assert limiter.retry_after("0123456789ab", "10.0.0.3") == 60
    assert limiter.retry_after("0123456789ac", "10.0.0.3") is None


def test_zero_means_no_limit() -> None:
    limiter = FailureLimiter(per_key=0, per_address=0, window_s=60, clock=Clock())
    for _ in range(1000):
        limiter.failed("0123456789ab", "10.0.0.1")
    assert limiter.retry_after("0123456789ab", "10.0.0.1") is None
