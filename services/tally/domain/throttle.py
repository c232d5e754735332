"""Failed authentications counted in a sliding window, per key id and per client address.

After ``limit`` failures within ``window`` seconds, that key id (whatever the secret sent
with it) or that address is refused until the oldest failure leaves the window. In
memory: each API process counts its own failures (N workers allow N times the limit).

A try is reserved before its key is checked (``FailureLimiter.reserve``, synchronous, so
before any await): tries still in flight count toward the limit, so N concurrent wrong
keys cannot all be checked before the first failure is recorded. A reservation ends as a
failure (``Reservation.fail``) or is released (``Reservation.release``, on success). A
try that finds the limit full of tries in flight waits for one of them to end, then asks
again: refused if they failed, let through if they succeeded (many concurrent requests
of a right key are delayed, never refused).

The tables are bounded: at most ``cap`` names each, the least recently used evicted first;
names untouched for a whole window are dropped from the old end as new ones arrive (each
name once: amortised O(1), never a pass over the whole table); a name's failure times are
trimmed lazily, when it is looked at.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_TRACKED = 10_000  # names per table (key ids; addresses): beyond, the least recent go
IPV6_PREFIX = 64  # an IPv6 client is counted by its /64: one host gets a whole /64


def address_budget(address: str) -> str:
    """The name an address is counted under: an IPv4 address itself, an IPv6 one's /64
    (one host usually holds a whole /64), anything else as it is."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_PREFIX), strict=False))
    return str(parsed)


class Entry:
    """One name's failure times (at most ``limit``), tries in flight, and last use."""

    __slots__ = ("failures", "in_flight", "touched")

    def __init__(self, limit: int, now: float) -> None:
        self.failures: deque[float] = deque(maxlen=limit)
        self.in_flight = 0
        self.touched = now


class Window:
    """Failure times and tries in flight per name, for at most ``cap`` names."""

    def __init__(self, limit: int, seconds: float, cap: int = MAX_TRACKED) -> None:
        self.limit, self.seconds, self.cap = limit, seconds, cap
        self.entries: OrderedDict[str, Entry] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self.entries)

    def check(self, name: str, now: float) -> tuple[float, bool]:
        """Seconds ``name`` must wait for its failures to leave the window (0: none), and
        whether its limit is full with tries still in flight (they may yet succeed)."""
        entry = self.entries.get(name)
        if self.limit <= 0 or entry is None:
            return 0, False
        failures = entry.failures
        while failures and failures[0] <= now - self.seconds:
            failures.popleft()
        if not failures and not entry.in_flight:
            del self.entries[name]
            return 0, False
        if len(failures) >= self.limit:
            self._touch(name, entry, now)  # an offender who keeps trying stays remembered
            return failures[0] + self.seconds - now, False
        return 0, len(failures) + entry.in_flight >= self.limit

    def reserve(self, name: str, now: float) -> None:
        """A try of ``name`` in flight: it counts toward the limit until it ends."""
        if self.limit > 0:
            self._entry(name, now).in_flight += 1

    def end(self, name: str, now: float, failed: bool) -> None:
        """A reserved try ended; ``failed``: it counts as a failure."""
        if self.limit <= 0:
            return
        entry = self.entries.get(name)
        if entry is not None:
            entry.in_flight = max(0, entry.in_flight - 1)
        if failed:
            self._entry(name, now).failures.append(now)

    def _entry(self, name: str, now: float) -> Entry:
        entry = self.entries.get(name)
        if entry is None:
            self._sweep(now)
            entry = self.entries[name] = Entry(self.limit, now)
            while len(self.entries) > self.cap:
                self.entries.popitem(last=False)
        else:
            self._touch(name, entry, now)
        return entry

    def _touch(self, name: str, entry: Entry, now: float) -> None:
        entry.touched = now
        self.entries.move_to_end(name)

    def _sweep(self, now: float) -> None:
        """Drop the names untouched for a whole window: they are the oldest, at the front
        (each is dropped once, so this costs O(1) per new name, amortised)."""
        stale = now - self.seconds
        while self.entries:
            oldest = next(iter(self.entries.values()))
            if oldest.touched > stale:
                return
            self.entries.popitem(last=False)


class Reservation:
    """One try, reserved against both limits; ends once, as a failure or released."""

    def __init__(self, limiter: FailureLimiter, key_id: str | None, address: str) -> None:
        self.limiter, self.key_id, self.address = limiter, key_id, address
        self.ended = False

    def fail(self) -> None:
        self._end(failed=True)

    def release(self) -> None:
        """The try succeeded (or never got an answer): it no longer counts."""
        self._end(failed=False)

    def _end(self, failed: bool) -> None:
        if self.ended:
            return
        self.ended = True
        now = self.limiter.clock()
        self.limiter.addresses.end(self.address, now, failed)
        if self.key_id:
            self.limiter.keys.end(self.key_id, now, failed)
        self.limiter.on_end()


class FailureLimiter:
    """Per key id and per address (IPv6: per /64); ``clock`` is monotonic seconds (a test
    passes its own); ``cap``: names tracked per table."""

    def __init__(
        self,
        per_key: int,
        per_address: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
        cap: int = MAX_TRACKED,
    ) -> None:
        self.keys = Window(per_key, window_s, cap)
        self.addresses = Window(per_address, window_s, cap)
        self.clock = clock
        self.on_end: Callable[[], None] = lambda: None  # a reservation ended

    def reserve(self, key_id: str | None, address: str) -> Reservation | int | None:
        """A reservation of one try; or the whole seconds to wait when refused; or None
        when the limit is full with tries in flight (ask again once one of them ended:
        ``on_end``). Synchronous: call it before awaiting the key's check, so concurrent
        tries see each other."""
        now, address = self.clock(), address_budget(address)
        wait, busy = self.addresses.check(address, now)
        if key_id:
            key_wait, key_busy = self.keys.check(key_id, now)
            wait, busy = max(wait, key_wait), busy or key_busy
        if wait > 0:
            return math.ceil(wait)
        if busy:
            return None
        self.addresses.reserve(address, now)
        if key_id:
            self.keys.reserve(key_id, now)
        return Reservation(self, key_id, address)


class EventBudget:
    """Events each key may send: ``per_second`` on average, ``burst`` at once (a token
    bucket per key id, in memory: each API process keeps its own). The table is bounded
    like the failure limits': the least recently seen keys go first."""

    def __init__(
        self,
        per_second: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        cap: int = MAX_TRACKED,
    ) -> None:
        self.per_second = per_second
        self.burst = burst
        self.clock = clock
        self.cap = cap
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, key: str, events: int) -> int:
        """0 when ``events`` may go now (and they are counted), else the whole seconds to
        wait before they may: more than a burst is never let through at once."""
        if self.per_second <= 0:
            return 0
        now = self.clock()
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.per_second)
        if events <= tokens:
            tokens -= events
            wait = 0
        else:
            wait = max(1, math.ceil((min(events, self.burst) - tokens) / self.per_second))
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.cap:
            self._buckets.popitem(last=False)
        return wait
