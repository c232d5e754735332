"""The failed-authentication limits of the API's keys and the pages' sign-in form: one
``FailureLimiter`` per process, shared by both, and a log line for each refusal."""

from __future__ import annotations

import logging

from starlette.requests import Request

from tally.domain.throttle import FailureLimiter

log = logging.getLogger("tally.api")


def client_address(request: Request) -> str:
    """The peer's address (the client's, when a trusted proxy said so: TALLY_TRUSTED_PROXIES)."""
    return request.client.host if request.client else "-"


def limiter_of(request: Request) -> FailureLimiter:
    limiter: FailureLimiter = request.app.state.limiter
    return limiter


def refused(request: Request, key_id: str | None) -> int | None:
    """Seconds the caller must wait (logged), or None when it may try its key."""
    address = client_address(request)
    wait = limiter_of(request).retry_after(key_id, address)
    if wait is not None:
        log.warning(
            "too many failed authentications: key=%s address=%s, refused for %d s",
            key_id or "-",
            address,
            wait,
        )
    return wait


def failed(request: Request, key_id: str | None) -> None:
    limiter_of(request).failed(key_id, client_address(request))
