"""Failed authentications counted in a sliding window, per key id and per client address.

After ``limit`` failures within ``window`` seconds, that key id (whatever the secret sent
with it) or that address is refused until the oldest failure leaves the window. In
memory: each API process counts its own failures (N workers allow N times the limit).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

SWEEP_AT = 10_000  # tracked names beyond which the stale ones are dropped


class Window:
    """Failure times per name; at most ``limit`` of them are kept per name."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit, self.seconds = limit, seconds
        self.failures: dict[str, deque[float]] = {}

    def wait(self, name: str, now: float) -> float:
        """Seconds ``name`` must wait: 0 when it may try."""
        times = self.failures.get(name)
        if self.limit <= 0 or times is None:
            return 0
        while times and times[0] <= now - self.seconds:
            times.popleft()
        if not times:
            del self.failures[name]
        return times[0] + self.seconds - now if len(times) >= self.limit else 0

    def fail(self, name: str, now: float) -> None:
        if self.limit <= 0:
            return
        if len(self.failures) >= SWEEP_AT:
            self.failures = {
                n: t for n, t in self.failures.items() if t and t[-1] > now - self.seconds
            }
        self.failures.setdefault(name, deque(maxlen=self.limit)).append(now)


class FailureLimiter:
    """Per key id and per address; ``clock`` is monotonic seconds (a test passes its own)."""

    def __init__(
        self,
        per_key: int,
        per_address: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys, self.addresses = Window(per_key, window_s), Window(per_address, window_s)
        self.clock = clock

    def retry_after(self, key_id: str | None, address: str) -> int | None:
        """Whole seconds to wait before trying again, or None when a try is allowed."""
        now = self.clock()
        wait = max(self.addresses.wait(address, now), self.keys.wait(key_id, now) if key_id else 0)
        return math.ceil(wait) if wait > 0 else None

    def failed(self, key_id: str | None, address: str) -> None:
        now = self.clock()
        self.addresses.fail(address, now)
        if key_id:
            self.keys.fail(key_id, now)
