"""Helpers for month-close tests: license reports, metering without Redis, closing."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from support.ledger_support import event, read
from tally import bootstrap
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import invoices
from tally.domain.period import period_bounds
from tally.service_layer.metering import MeteringService
from tally.service_layer.month_close import CloseReport, close_period
from tally.service_layer.reproduce import Reproduction, reproduce_all

GRACE = timedelta(hours=24)
STREAM_IDS = itertools.count(1)  # unique per test process, as a stream's ids are


def license_day(event_id: str, lic: str, model: str, amount: Any, *, org: str, day: str) -> bytes:
    data = {"license": lic, "model": model}
    data["hours" if model == "hourly" else "users"] = amount
    return event("license.usage", event_id, data, org=org, time=f"{day}T23:00:00Z")


async def meter(service: MeteringService, payloads: list[bytes], stream: str = "s") -> None:
    """Meter payloads as one batch, as the consumer would after reading them."""
    entries = [(f"{next(STREAM_IDS)}-0", {b"event": payload}) for payload in payloads]
    await service.process(stream, entries)


def after(period: str) -> datetime:
    """An instant at which ``period`` may be closed."""
    return period_bounds(period)[1] + GRACE


async def close(engine: AsyncEngine, period: str, **kwargs: Any) -> CloseReport:
    """Close ``period``; then every invoice of the ledger must reproduce from its raw events
    (``tally invoice reproduce --all``), so every close test checks that too."""
    db = bootstrap.database(engine)
    report = await close_period(db, period, after(period), GRACE, **kwargs)
    await reproduced(engine)
    return report


async def reproduced(engine: AsyncEngine) -> list[Reproduction]:
    """Every invoice reproduced; fails naming each one that does not, and why."""
    done = await reproduce_all(bootstrap.database(engine))
    failed = [r for r in done if not r.reproduced]
    assert not failed, "\n".join(
        f"{r.number}: {[*r.differences, *r.digest_differences, *r.events_changed]}" for r in failed
    )
    return done


async def document(engine: AsyncEngine, org: str, period: str) -> dict[str, Any]:
    found = await read(engine, invoices.invoice, org, period)
    assert found is not None, f"no invoice for {org} {period}"
    return found.document.model_dump()


def line(doc: dict[str, Any], meter: str) -> dict[str, Any]:
    return next(item for item in doc["lines"] if item["meter"] == meter)


async def balance(engine: AsyncEngine, code: str) -> Decimal:
    async with raw_connection(engine) as conn:
        value = await conn.fetchval(
            """SELECT coalesce(sum(l.amount), 0) FROM entry_line l
                 JOIN account a ON a.id = l.account_id WHERE a.code = $1""",
            code,
        )
    return Decimal(value)
