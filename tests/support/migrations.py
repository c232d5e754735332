"""Helpers for the migration tests: step a scratch database through the revisions, insert
rows as a revision stored them (raw SQL, never today's application code), compare schemas
and table contents before and after."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.schema import alembic_config

# Every object of the public schema that a revision creates or changes, with its definition.
SCHEMA = """
SELECT 'column' AS kind, table_name || '.' || column_name AS name,
       concat_ws(' ', data_type, is_nullable, column_default) AS definition
  FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'constraint', conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'trigger', tgrelid::regclass::text || '.' || tgname, pg_get_triggerdef(oid)
  FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'function', proname, prosrc FROM pg_proc WHERE pronamespace = 'public'::regnamespace
UNION ALL
SELECT 'sequence', sequence_name, data_type
  FROM information_schema.sequences WHERE sequence_schema = 'public'
ORDER BY 1, 2"""

Schema = dict[tuple[str, str], str]
ZERO = bytes(32)


def digest(*parts: object) -> bytes:
    """Some 32-byte hash: the database stores hashes, it does not recompute them."""
    return hashlib.sha256(repr(parts).encode()).digest()


@dataclass
class Migrations:
    """A scratch database, stepped through the revisions, and its owner's engine."""

    url: str
    engine: AsyncEngine

    async def upgrade(self, revision: str) -> None:
        await asyncio.to_thread(command.upgrade, alembic_config(self.url), revision)

    async def downgrade(self, revision: str) -> None:
        await asyncio.to_thread(command.downgrade, alembic_config(self.url), revision)

    async def schema(self) -> Schema:
        async with raw_connection(self.engine) as conn:
            return {(r["kind"], r["name"]): r["definition"] for r in await conn.fetch(SCHEMA)}

    async def function_source(self, name: str) -> str:
        async with raw_connection(self.engine) as conn:
            source: str = await conn.fetchval(
                "SELECT prosrc FROM pg_proc WHERE proname = $1 "
                "AND pronamespace = 'public'::regnamespace",
                name,
            )
            return source

    async def contents(self, *tables: str) -> dict[str, list[dict[str, Any]]]:
        """Every row of ``tables``, in a stable order."""
        async with raw_connection(self.engine) as conn:
            return {
                table: [dict(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")]
                for table in tables
            }

    async def round_trip(self, before: str, revision: str) -> tuple[Schema, Schema]:
        """``before`` → ``revision`` → ``before`` → ``revision``: each step's schema is
        exactly what that revision made the first time. Returns both schemas."""
        await self.upgrade(before)
        at_before = await self.schema()
        await self.upgrade(revision)
        at_revision = await self.schema()
        assert at_revision != at_before
        await self.downgrade(before)
        assert await self.schema() == at_before
        await self.upgrade(revision)
        assert await self.schema() == at_revision
        return at_before, at_revision


def unchanged(
    before: dict[str, list[dict[str, Any]]], after: dict[str, list[dict[str, Any]]]
) -> bool:
    """The rows of ``before`` are all there, as they were (columns added since ignored)."""
    return before == {
        table: [{column: row[column] for column in rows[0]} for row in after[table]]
        if rows
        else after[table]
        for table, rows in before.items()
    }


async def ledger_0001(conn: asyncpg.Connection) -> None:
    """A small ledger as revision 0001 stores it: a rate card, two organizations, one
    balanced usage entry with its metered event, a non-billable event, a duplicate, a
    conflict and two dead letters (one replayed), on two streams."""
    await conn.execute(
        """INSERT INTO rate_card (version, effective_from, body)
           VALUES ('2026-01', '2026-01-01T00:00:00Z', '{"version": "2026-01"}')"""
    )
    await conn.execute(
        "INSERT INTO organization (name, currency) VALUES ('acme', 'USD'), ('globex', 'EUR')"
    )
    usage, allowance = [
        r["id"]
        for r in await conn.fetch(
            """INSERT INTO account (code, owner, period, unit, kind) VALUES
                 ('org/acme/2026-10/api_request/usage', 'acme', '2026-10', 'api_request',
                  'usage'),
                 ('org/acme/2026-10/api_request/allowance', 'acme', '2026-10', 'api_request',
                  'allowance')
               RETURNING id"""
        )
    ]
    async with conn.transaction():
        entry = await conn.fetchval(
            """INSERT INTO journal_entry (idempotency_key, kind, org, period, rate_card_version,
                   posted_at, lane, seq, prev_hash, hash)
               VALUES ('usage:s1:1-0', 'usage', 'acme', '2026-10', '2026-01',
                       '2026-10-15T12:00:01Z', 1, 1, $1, $2) RETURNING id""",
            ZERO,
            digest("entry", 1),
        )
        await conn.execute(
            "INSERT INTO entry_line (entry_id, account_id, amount)"
            " VALUES ($1, $2, 3), ($1, $3, -3)",
            entry,
            usage,
            allowance,
        )
        await conn.execute(
            "UPDATE ledger_lane SET seq = 1, head_hash = $1 WHERE lane = 1", digest("entry", 1)
        )
    await conn.execute(
        """INSERT INTO usage_event (source, id, type, org, event_time, period, status, meter,
               feature, quantity, rate_card_version, raw, stream, stream_id, received_at,
               entry_id)
           VALUES ('crm', 'r1', 'api.request', 'acme', '2026-10-15T12:00:00Z', '2026-10',
                   'metered', 'api_requests', NULL, 3, '2026-01', $2, 's1', '1-0',
                   '2026-10-15T12:00:01Z', $1),
                  ('crm', 'r2', 'api.request', 'acme', '2026-10-15T12:00:00Z', '2026-10',
                   'non_billable', NULL, NULL, 1, '2026-01', $3, 's1', '2-0',
                   '2026-10-15T12:00:01Z', NULL)""",
        entry,
        api_raw("r1", "integration", count=3),
        api_raw("r2", "ui"),
    )
    await conn.execute(
        """INSERT INTO duplicate_delivery (stream, stream_id, source, id, received_at)
           VALUES ('s1', '3-0', 'crm', 'r1', '2026-10-15T12:00:02Z')"""
    )
    await conn.execute(
        """INSERT INTO event_conflict (stream, stream_id, source, id, raw, received_at)
           VALUES ('s2', '1-0', 'crm', 'r1', '{"id": "r1", "x": 1}', '2026-10-15T12:00:03Z')"""
    )
    await conn.execute(
        """INSERT INTO dead_letter (stream, stream_id, raw, reason, code, received_at,
               replayed_at, replay_outcome)
           VALUES ('s2', '2-0', 'not json', 'not JSON', 'invalid_json',
                   '2026-10-15T12:00:04Z', NULL, NULL),
                  ('s2', '3-0', '{}', 'unknown organization', 'unknown_organization',
                   '2026-10-15T12:00:05Z', '2026-10-16T00:00:00Z', 'metered')"""
    )


def api_raw(
    event_id: str,
    kind: str,
    count: int = 1,
    client: str = "c-1",
    url: tuple[str, str] = ("GET", "/api/v2/users"),
    status: int = 200,
    time: str = "2026-10-15T12:00:00Z",
) -> bytes:
    """An ``api.request`` event's bytes, as the wire contract has them."""
    data = {"oauth_client_id": client, "method": url[0], "template_uri": url[1],
            "status": status, "client_kind": kind, "count": count}  # fmt: skip
    event = {"specversion": "1.0", "id": event_id, "source": "crm", "type": "api.request",
             "time": time, "subject": "acme", "data": data}  # fmt: skip
    return json.dumps(event).encode()


LEDGER_0001 = (
    "rate_card",
    "organization",
    "account",
    "ledger_lane",
    "journal_entry",
    "entry_line",
    "usage_event",
    "duplicate_delivery",
    "event_conflict",
    "dead_letter",
)


LINES = {"api_requests": Decimal("80.00"), "ai_tokens": Decimal(0)}


async def issue(
    conn: asyncpg.Connection,
    number: int,
    org: str = "acme",
    period: str = "2026-10",
    lines: dict[str, Decimal] = LINES,
    total: Decimal | None = None,
) -> None:
    """An invoice and its meter lines, as the close writes them: in one transaction."""
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO invoice (number, org, period, currency, total, rate_card_version,
                   issued_at)
               VALUES ($1, $2, $3, 'USD', $4, '2026-01', '2026-11-02T00:00:00Z')""",
            number,
            org,
            period,
            sum(lines.values(), Decimal(0)) if total is None else total,
        )
        for meter, amount in lines.items():
            await conn.execute(
                """INSERT INTO invoice_line (invoice, meter, description, allocation, used,
                       overage, expired, unit_price, amount)
                   VALUES ($1, $2, 'x', 2200000, 3000000, 800000, 0, 0.0001, $3)""",
                number,
                meter,
                amount,
            )
