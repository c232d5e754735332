"""PostgreSQL itself keeps the ledger's invariants, whatever the application does."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from support.ledger_support import ai, api
from tally.adapters.postgres.connection import raw_connection, raw_transaction
from tally.adapters.postgres.journal import Journal
from tally.domain.ledger import Account, Entry, Line, allowance, usage
from tally.service_layer.metering import MeteringService


async def _post(engine: AsyncEngine, entry: Entry) -> None:
    async with raw_transaction(engine) as conn:
        await Journal().post(conn, [entry])


def _entry(key: str, *amounts: tuple[Account, str]) -> Entry:
    lines = tuple(Line(account, Decimal(amount)) for account, amount in amounts)
    return Entry(key, "usage", "acme", "2026-10", "2020-01", lines)


async def test_a_balanced_entry_posts(engine: AsyncEngine) -> None:
    await _post(
        engine,
        _entry(
            "ok",
            (usage("acme", "2026-10", "api_request"), "5"),
            (allowance("acme", "2026-10", "api_request"), "-5"),
        ),
    )


async def test_an_unbalanced_entry_is_refused(engine: AsyncEngine) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="unbalanced entry"):
        await _post(
            engine,
            _entry(
                "lopsided",
                (usage("acme", "2026-10", "api_request"), "5"),
                (allowance("acme", "2026-10", "api_request"), "-4"),
            ),
        )


async def test_balance_is_per_unit(engine: AsyncEngine) -> None:
    """Five requests cannot pay for five tokens: each unit balances on its own."""
    with pytest.raises(asyncpg.CheckViolationError, match="unbalanced entry"):
        await _post(
            engine,
            _entry(
                "mixed",
                (usage("acme", "2026-10", "api_request"), "5"),
                (allowance("acme", "2026-10", "ai_token"), "-5"),
            ),
        )


async def test_an_entry_needs_two_lines(engine: AsyncEngine) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="fewer than two lines"):
        await _post(engine, _entry("lonely", (usage("acme", "2026-10", "api_request"), "0")))


async def test_an_idempotency_key_posts_once(engine: AsyncEngine) -> None:
    entry = _entry(
        "once",
        (usage("acme", "2026-10", "api_request"), "1"),
        (allowance("acme", "2026-10", "api_request"), "-1"),
    )
    await _post(engine, entry)
    with pytest.raises(asyncpg.UniqueViolationError):
        await _post(engine, entry)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE entry_line SET amount = amount + 1",
        "DELETE FROM entry_line",
        "UPDATE journal_entry SET kind = 'x'",
        "DELETE FROM journal_entry",
        "UPDATE usage_event SET quantity = 0",
        "DELETE FROM usage_event",
        "TRUNCATE entry_line CASCADE",
        "UPDATE dead_letter SET reason = 'nothing to see'",
        "DELETE FROM dead_letter",
        "UPDATE account SET owner = 'globex'",
        "DELETE FROM meter_total",
        "UPDATE meter_total SET quantity = 0",
        "INSERT INTO entry_line (entry_id, account_id, amount)"
        " SELECT entry_id, account_id, -amount FROM entry_line"
        " UNION ALL SELECT entry_id, account_id, amount FROM entry_line",
    ],
)
async def test_posted_rows_refuse_update_and_delete(
    owner: AsyncEngine, service: MeteringService, statement: str
) -> None:
    """Even the tables' owner, whom no grant limits, is refused by the triggers."""
    await service.process(
        "s",
        [
            ("1-0", {b"event": api("e1")}),
            ("2-0", {b"junk": b"1"}),
            ("3-0", {b"event": ai("a1", "voice_bot", "3", "minute")}),
        ],
    )
    async with raw_connection(owner) as conn:
        with pytest.raises(
            asyncpg.RestrictViolationError, match=r"refused|keeps its bytes|is posted|only grows"
        ):
            await conn.execute(statement)


async def test_an_event_cannot_point_at_an_entry_that_does_not_exist(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await service.process("s", [("1-0", {b"event": api("e1")})])
    async with raw_connection(engine) as conn:
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="does not exist"):
            await conn.execute(
                "INSERT INTO usage_event SELECT source, 'e2', type, org, event_time, period,"
                " status, meter, feature, quantity, rate_card_version, raw, stream, '9-9',"
                " received_at, entry_id + 1000 FROM usage_event"
            )
