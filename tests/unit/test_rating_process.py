"""Rating in a worker process gives what rating here gives: every event of a mix, every
kind of reject, and a context change between batches (a new organization)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tally.domain.ratecard import RateCardBook
from tally.domain.rating import Limits, StreamEntry, rate
from tally.service_layer.rating_process import RatingContext, RatingProcess
from tally_tools.loadgen import LoadMix, default_card

ORGS = ["acme", "globex", "initech"]
LIMITS = Limits(65_536, timedelta(minutes=5))
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def entries(seed: int) -> list[StreamEntry]:
    mix = LoadMix(ORGS, "2026-10", 600, seed=seed, duplicates=0.05, bad=0.05)
    return [
        (f"1-{n}", [(name.encode(), value) for name, value in entry.fields.items()])
        for n, entry in enumerate(mix)
    ]


async def test_the_worker_rates_as_this_process_does() -> None:
    book = RateCardBook([default_card()])
    known = {org: "USD" for org in ORGS[:2]}  # initech is not known yet: rejected
    later = {org: "USD" for org in ORGS}  # then it is (a new context object)
    worker = RatingProcess()
    try:
        await worker.start()
        for orgs, seed in ((known, 1), (known, 2), (later, 3)):
            batch = entries(seed)
            here = [rate(sid, fields, orgs, book, LIMITS, NOW) for sid, fields in batch]
            there = await worker.rate(batch, RatingContext(orgs, book, LIMITS, None), NOW)
            assert there == here
            assert {type(r).__name__ for r in there} == {"Rated", "Reject"}
    finally:
        worker.close()


async def test_a_worker_that_died_is_started_again() -> None:
    book = RateCardBook([default_card()])
    context = RatingContext({org: "USD" for org in ORGS}, book, LIMITS, None)
    worker = RatingProcess()
    try:
        first = await worker.rate(entries(4), context, NOW)
        assert worker._pool is not None
        for process in list(worker._pool._processes.values()):
            process.kill()
            process.join()
        again = await worker.rate(entries(4), context, NOW)
        assert again == first
    finally:
        worker.close()


@pytest.fixture(autouse=True)
def _no_leftover_children() -> Iterator[None]:
    """A closed worker has ended (nothing outlives the consumer)."""
    yield
    assert not [p for p in multiprocessing.active_children() if p.is_alive()]
