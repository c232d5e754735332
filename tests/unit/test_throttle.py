"""The failed-authentication window: N failures of a key id or an address refuse the next
try for the rest of the window, then it slides (a test clock, no waiting)."""

from __future__ import annotations

from tally.domain.throttle import FailureLimiter, Reservation, address_budget


def fail(limiter: FailureLimiter, key_id: str | None, address: str) -> None:
    """A wrong key, as the API and the sign-in form meet it: reserved, then failed."""
    reserved = limiter.reserve(key_id, address)
    assert isinstance(reserved, Reservation), reserved
    reserved.fail()


def refused_for(limiter: FailureLimiter, key_id: str | None, address: str) -> int | None:
    """The seconds a try must wait, or None when it may go (its reservation released)."""
    reserved = limiter.reserve(key_id, address)
    if isinstance(reserved, Reservation):
        reserved.release()
        return None
    return reserved


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_refused_after_its_failures_until_the_window_slides() -> None:
    clock = Clock()
    limiter = FailureLimiter(per_key=0, per_address=3, window_s=60, clock=clock)
    for _ in range(3):
        assert refused_for(limiter, None, "10.0.0.1") is None
        fail(limiter, None, "10.0.0.1")
        clock.now += 10
    assert refused_for(limiter, None, "10.0.0.1") == 30  # the first failure leaves at 1060
    assert refused_for(limiter, None, "10.0.0.2") is None  # another client
    clock.now += 30
    assert refused_for(limiter, None, "10.0.0.1") is None  # two failures left in the window
    fail(limiter, None, "10.0.0.1")
    assert refused_for(limiter, None, "10.0.0.1") == 10


def test_a_key_id_is_refused_from_every_address() -> None:
    clock = Clock()
    limiter = FailureLimiter(per_key=2, per_address=100, window_s=60, clock=clock)
    fail(limiter, "0123456789ab", "10.0.0.1")
    fail(limiter, "0123456789ab", "10.0.0.2")
    assert refused_for(limiter, "0123456789ab", "10.0.0.3") == 60
    assert refused_for(limiter, "0123456789ac", "10.0.0.3") is None


def test_zero_means_no_limit() -> None:
    limiter = FailureLimiter(per_key=0, per_address=0, window_s=60, clock=Clock())
    for _ in range(1000):
        fail(limiter, "0123456789ab", "10.0.0.1")
    assert refused_for(limiter, "0123456789ab", "10.0.0.1") is None


def test_tries_in_flight_count_toward_the_limit() -> None:
    """Reserved before the key's check is awaited: the limit's worth of concurrent tries
    are let through, the next must wait for one to end (None), and is refused once the
    tries in flight failed; a released try (a success) no longer counts."""
    limiter = FailureLimiter(per_key=0, per_address=3, window_s=60, clock=Clock())
    ended: list[int] = []
    limiter.on_end = lambda: ended.append(1)
    tries = [limiter.reserve(None, "10.0.0.1") for _ in range(5)]
    assert tries[3:] == [None, None]
    first, second, third = (t for t in tries[:3] if isinstance(t, Reservation))
    first.release()  # a success: forgotten
    second.fail()
    second.fail()  # ends once
    assert len(ended) == 2
    assert refused_for(limiter, None, "10.0.0.1") is None  # 1 failure + 1 in flight
    fourth = limiter.reserve(None, "10.0.0.1")
    assert isinstance(fourth, Reservation)
    assert limiter.reserve(None, "10.0.0.1") is None  # full, but the tries may succeed
    third.fail()
    fourth.fail()
    assert limiter.reserve(None, "10.0.0.1") == 60  # full of failures: refused
    assert refused_for(limiter, None, "10.0.0.1") == 60


def test_a_key_id_full_of_tries_in_flight_waits_from_any_address() -> None:
    limiter = FailureLimiter(per_key=1, per_address=100, window_s=60, clock=Clock())
    reserved = limiter.reserve("0123456789ab", "10.0.0.1")
    assert isinstance(reserved, Reservation)
    assert limiter.reserve("0123456789ab", "10.0.0.2") is None
    reserved.release()
    assert isinstance(limiter.reserve("0123456789ab", "10.0.0.2"), Reservation)


def test_the_tables_never_exceed_their_cap_and_a_recent_offender_stays_refused() -> None:
    clock = Clock()
    limiter = FailureLimiter(per_key=2, per_address=2, window_s=60, clock=clock, cap=100)
    for n in range(5000):  # sprayed: a fresh key id and address each time
        fail(limiter, f"{n:012x}", f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
        assert len(limiter.keys) <= 100 and len(limiter.addresses) <= 100
    for _ in range(2):
        fail(limiter, "offender0000", "192.0.2.1")
    for n in range(99):  # the table fills up again behind the offender
        fail(limiter, f"{n:012x}", f"10.1.{n >> 8 & 255}.{n & 255}")
    assert len(limiter.keys) == 100 and len(limiter.addresses) == 100
    assert refused_for(limiter, "offender0000", "198.51.100.1") == 60
    assert refused_for(limiter, None, "192.0.2.1") == 60
    clock.now += 61  # a window later, the stale names are dropped as new ones come
    fail(limiter, "newcomer0000", "192.0.2.2")
    assert len(limiter.keys) == 1 and len(limiter.addresses) == 1


def test_an_ipv6_client_is_counted_by_its_64() -> None:
    limiter = FailureLimiter(per_key=0, per_address=2, window_s=60, clock=Clock())
    fail(limiter, None, "2001:db8:1:2::1")
    fail(limiter, None, "2001:db8:1:2:ffff:ffff:ffff:fffe")
    assert refused_for(limiter, None, "2001:db8:1:2:abcd::7") == 60  # same /64
    assert refused_for(limiter, None, "2001:db8:1:3::1") is None  # another /64
    fail(limiter, None, "10.0.0.1")
    fail(limiter, None, "10.0.0.1")
    assert refused_for(limiter, None, "10.0.0.1") == 60
    assert refused_for(limiter, None, "10.0.0.2") is None  # IPv4: the address itself
    assert address_budget("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_budget("2001:DB8::1") == "2001:db8::/64"
    assert address_budget("-") == "-"
