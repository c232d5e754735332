"""The failed-authentication limits of the API's keys and the pages' sign-in form: one
``FailureLimiter`` per process, shared by both, and a log line for each refusal.

A caller reserves its try (``attempt``) before it awaits the key's check, and ends the
reservation as a failure or releases it: concurrent tries count toward the limit."""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request

from tally.domain.throttle import FailureLimiter, Reservation

log = logging.getLogger("tally.api")


def client_address(request: Request) -> str:
    """The peer's address (the client's, when a trusted proxy said so: TALLY_TRUSTED_PROXIES)."""
    return request.client.host if request.client else "-"


def limiter_of(request: Request) -> FailureLimiter:
    limiter: FailureLimiter = request.app.state.limiter
    return limiter


class Waiters:
    """Tries waiting for a reservation to end (the limit was full of tries in flight)."""

    def __init__(self, limiter: FailureLimiter) -> None:
        self.ended = asyncio.Event()
        limiter.on_end = self.wake

    def wake(self) -> None:
        self.ended.set()
        self.ended = asyncio.Event()


async def attempt(request: Request, key_id: str | None) -> Reservation | int:
    """A reserved try (end it: ``fail()`` or ``release()``), or the seconds the caller
    must wait (logged). The reservation is made before the key's check is awaited; while
    the limit is full of tries in flight, this waits for one of them to end."""
    address = client_address(request)
    limiter = limiter_of(request)
    waiters: Waiters = request.app.state.waiters
    while (reserved := limiter.reserve(key_id, address)) is None:
        await waiters.ended.wait()
    if isinstance(reserved, int):
        log.warning(
            "too many failed authentications: key=%s address=%s, refused for %d s",
            key_id or "-",
            address,
            reserved,
        )
    return reserved
