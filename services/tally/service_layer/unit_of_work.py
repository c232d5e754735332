"""One unit of work: a PostgreSQL transaction with the journal's bookkeeping, retried whole.

The ledger's journal keeps the hash chain's head in memory; a transaction that rolls back
must tell it (``rolled_back``), one that commits too (``committed``). Two use cases run
transactions that may race another writer (the metering of a batch, a chunk of the month
close): both retry through :func:`retrying`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tally.adapters.ports.ledger import Journal

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRIES = 5


async def retrying(
    work: Callable[[], Awaitable[T]],
    journal: Journal,
    retry_on: tuple[type[BaseException], ...],
    attempts: int = RETRIES,
    what: str = "transaction",
) -> T:
    """Run ``work`` (one transaction) up to ``attempts`` times while it raises ``retry_on``.

    Any failure rolls the journal back; the last retryable failure, or any other, is raised.
    """
    for attempt in range(1, attempts + 1):
        try:
            result = await work()
        except retry_on as exc:
            journal.rolled_back()
            if attempt == attempts:
                raise
            log.info("%s raced another writer (%s); retrying", what, exc)
            continue
        except BaseException:
            journal.rolled_back()
            raise
        journal.committed()
        return result
    raise AssertionError("unreachable")
