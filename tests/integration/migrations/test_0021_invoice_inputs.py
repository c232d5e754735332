"""Revision 0021, invoice inputs: an invoice issued before it keeps everything and has no
input digest, yet reproduces from its raw events (its digest shown as absent); a digest is a
record of 32 bytes, never changed."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest

from support.migrations import ZERO, Migrations, api_raw, digest, unchanged
from tally import bootstrap
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.ratecard_files import bundled_cards
from tally.domain.invoicing import CloseInput, Usage, close_org
from tally.service_layer.reproduce import reproduce

PREVIOUS = "0020"
CARD = bundled_cards()[-1]
INVOICE_TABLES = ("invoice", "invoice_line", "invoice_feature", "billed_entry", "usage_event")


async def invoiced_before_0021(conn: asyncpg.Connection) -> None:
    """One organization's October, metered and invoiced as a 0019 ledger stores it: the
    card, a usage entry carrying one event of 3 requests, invoice 1 billing it."""
    await conn.execute(
        "INSERT INTO rate_card (version, effective_from, body) VALUES ($1, $2, $3::jsonb)",
        CARD.version,
        CARD.effective_from,
        CARD.model_dump_json(),
    )
    await conn.execute("INSERT INTO organization (name, currency) VALUES ('acme', 'USD')")
    accounts = await conn.fetch(
        """INSERT INTO account (code, owner, period, unit, kind) VALUES
             ('org/acme/2026-10/api_request/usage', 'acme', '2026-10', 'api_request', 'usage'),
             ('org/acme/2026-10/api_request/allowance', 'acme', '2026-10', 'api_request',
              'allowance')
           RETURNING id"""
    )
    async with conn.transaction():
        entry = await conn.fetchval(
            """INSERT INTO journal_entry (idempotency_key, kind, org, period, rate_card_version,
                   posted_at, lane, seq, prev_hash, hash)
               VALUES ('usage/acme/2026-10/api_request/x', 'usage', 'acme', '2026-10', $1,
                       '2026-10-15T12:00:01Z', 1, 1, $2, $3) RETURNING id""",
            CARD.version,
            ZERO,
            digest("entry", 1),
        )
        await conn.execute(
            "INSERT INTO entry_line (entry_id, account_id, amount)"
            " VALUES ($1, $2, 3), ($1, $3, -3)",
            entry,
            *(row["id"] for row in accounts),
        )
        await conn.execute(
            "UPDATE ledger_lane SET seq = 1, head_hash = $1 WHERE lane = 1", digest("entry", 1)
        )
    await conn.execute(
        """INSERT INTO usage_event (source, id, type, org, event_time, period, status, meter,
               feature, quantity, rate_card_version, raw, stream, stream_id, received_at,
               entry_id)
           VALUES ('crm', 'r1', 'api.request', 'acme', '2026-10-15T12:00:00Z', '2026-10',
                   'metered', 'api_request', NULL, 3, $1, $2, 's1', '1-0',
                   '2026-10-15T12:00:01Z', $3)""",
        CARD.version,
        api_raw("r1", "integration", count=3),
        entry,
    )
    draft = close_org(
        CloseInput("acme", "USD", "2026-10", CARD, [], {}, {"api_requests": Usage(Decimal(3))})
    )
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO invoice (number, org, period, currency, total, rate_card_version,
                   issued_at)
               VALUES (1, 'acme', '2026-10', 'USD', $1, $2, '2026-11-02T00:00:00Z')""",
            draft.total,
            CARD.version,
        )
        for line in draft.lines:
            p = line.priced
            await conn.execute(
                """INSERT INTO invoice_line (invoice, meter, description, allocation, used,
                       overage, expired, unit_price, amount)
                   VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8)""",
                line.meter,
                line.description,
                p.allocation,
                p.used,
                p.overage,
                p.expired,
                p.unit_price,
                p.amount,
            )
        await conn.execute(
            "INSERT INTO billed_entry (entry_id, invoice, meter) VALUES ($1, 1, 'api_requests')",
            entry,
        )


async def test_0021_keeps_earlier_invoices_which_reproduce_without_a_digest(
    migrations: Migrations,
) -> None:
    await migrations.upgrade(PREVIOUS)
    async with raw_connection(migrations.engine) as conn:
        await invoiced_before_0021(conn)
    before = await migrations.contents(*INVOICE_TABLES)

    await migrations.upgrade("0021")

    assert unchanged(before, await migrations.contents(*INVOICE_TABLES))
    result = await reproduce(bootstrap.database(migrations.engine), 1)
    assert result.reproduced and result.identical and result.events == 1
    assert result.digest is None and len(bytes.fromhex(result.digest_now)) == 32
    async with raw_connection(migrations.engine) as conn:
        assert await conn.fetchval("SELECT count(*) FROM invoice_input") == 0
        insert = "INSERT INTO invoice_input (invoice, digest, parts) VALUES ($1, $2, $3)"
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(insert, 1, bytes(31), "[]")  # a SHA-256 is 32 bytes
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(insert, 1, bytes(32), "{}")  # what it covers is a list
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(insert, 2, bytes(32), "[]")  # no invoice 2
        await conn.execute(insert, 1, bytes(32), "[]")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(insert, 1, bytes(32), "[]")  # one digest per invoice
        for statement in (
            "UPDATE invoice_input SET digest = digest",
            "DELETE FROM invoice_input",
            "TRUNCATE invoice_input",
        ):
            with pytest.raises(asyncpg.RestrictViolationError):
                await conn.execute(statement)
    recorded = await reproduce(bootstrap.database(migrations.engine), 1)
    assert recorded.digest == "00" * 32 and not recorded.reproduced  # not the inputs' digest
    assert recorded.digest_differences


async def test_0021_round_trips(migrations: Migrations) -> None:
    await migrations.round_trip(PREVIOUS, "0021")
