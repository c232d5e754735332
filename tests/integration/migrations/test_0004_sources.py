"""Revision 0004, producer sources: a 0003 ledger stays whole, and the source registry is
append-only, with organizations that exist.

Both tests store their rows with raw SQL as the revision before stores them; the second
chains its one usage entry as the journal does, so the ledger is checked to verify at head."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from support.ledger_support import api, balance_map, read
from support.migrations import LEDGER_0001, Migrations, ledger_0001, unchanged
from tally.adapters.postgres import metering_store, sources
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import org_balances
from tally.adapters.postgres.verification import verify
from tally.adapters.ratecard_files import bundled_cards
from tally.domain.ledger import GENESIS_HASH, chain_hash, events_digest, usage_entry
from tally.domain.rating import SourceGrant

REFUSED = {
    "INSERT INTO producer_source (name, enabled, any_org, orgs)"
    " VALUES ('x', true, false, '{hooli}')": asyncpg.ForeignKeyViolationError,
    "INSERT INTO producer_source (name, enabled, any_org, orgs)"
    " VALUES ('x', true, false, '{}')": asyncpg.CheckViolationError,
    "INSERT INTO producer_source (name, enabled, any_org, orgs)"
    " VALUES ('x', true, true, '{acme}')": asyncpg.CheckViolationError,
    "INSERT INTO producer_source (name, enabled, any_org, orgs)"
    " VALUES ('x', false, false, '{acme}')": asyncpg.CheckViolationError,
    "INSERT INTO producer_source (name, enabled, any_org, orgs)"
    " VALUES ('x', true, false, '{acme,NULL}')": asyncpg.CheckViolationError,
    "INSERT INTO producer_source (name, enabled, any_org, orgs)"
    " VALUES ('', true, true, '{}')": asyncpg.CheckViolationError,
    "UPDATE producer_source SET any_org = true": asyncpg.RestrictViolationError,
    "DELETE FROM producer_source": asyncpg.RestrictViolationError,
    "TRUNCATE producer_source": asyncpg.RestrictViolationError,
}
NEWEST = """SELECT DISTINCT ON (name) name, enabled, any_org, orgs
              FROM producer_source ORDER BY name, id DESC"""


async def test_0004_adds_an_append_only_registry_beside_a_0003_ledger(
    migrations: Migrations,
) -> None:
    await migrations.upgrade("0003")
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
    before = await migrations.contents(*LEDGER_0001, "delivery_tally", "delivery_lane")

    await migrations.upgrade("0004")

    assert unchanged(before, await migrations.contents(*before))
    async with raw_connection(migrations.engine) as conn:
        assert await conn.fetchval("SELECT count(*) FROM producer_source") == 0
        await conn.execute(
            """INSERT INTO producer_source (name, enabled, any_org, orgs) VALUES
                 ('crm', true, false, '{acme}'), ('crm', true, false, '{acme,globex}'),
                 ('batch', true, true, '{}'), ('old', true, false, '{acme}'),
                 ('old', false, false, '{}')"""
        )
        for statement, error in REFUSED.items():
            with pytest.raises(error):
                await conn.execute(statement)
        assert [tuple(r) for r in await conn.fetch(NEWEST)] == [
            ("batch", True, True, []),
            ("crm", True, False, ["acme", "globex"]),
            ("old", False, False, []),
        ]


async def test_0004_round_trip(migrations: Migrations) -> None:
    await migrations.round_trip("0003", "0004")


async def _no_rollups(*_: object) -> None:
    """What metering wrote to the rollups before they existed: nothing."""


COUNTS = """SELECT (SELECT count(*) FROM usage_event) AS events,
                   (SELECT count(*) FROM journal_entry) AS entries,
                   (SELECT count(*) FROM dead_letter) AS letters,
                   (SELECT string_agg(encode(head_hash, 'hex'), ',' ORDER BY lane)
                      FROM ledger_lane) AS heads"""
RECEIVED = datetime(2026, 10, 15, 12, 0, 1, tzinfo=UTC)


async def metered_0002(conn: asyncpg.Connection) -> None:
    """A ledger as 0002 stores it, written with that revision's SQL: the bundled rate card,
    one metered api.request (3 requests) and its usage entry, chained as the journal chains
    entries (so that ``tally ledger verify`` can check it), and a dead letter. 0003 then
    tallies these deliveries itself."""
    card = bundled_cards()[-1]
    raw = api("r1", count=3, source="crm-sync")
    await conn.execute(
        "INSERT INTO rate_card (version, effective_from, body) VALUES ($1, $2, $3::jsonb)",
        card.version,
        card.effective_from,
        card.model_dump_json(),
    )
    await conn.execute(
        "INSERT INTO organization (name, currency) VALUES ('acme', 'USD'), ('globex', 'EUR')"
    )
    entry = usage_entry(
        "usage:s:1-0", "acme", "2026-10", "api_request", {None: Decimal(3)}, card.version
    )
    lines = [(line.account.code, line.amount) for line in entry.lines]
    carried = events_digest([("crm-sync", "r1", hashlib.sha256(raw).digest())])
    head = chain_hash(GENESIS_HASH, 1, 1, RECEIVED, entry, lines, carried)
    async with conn.transaction():
        accounts = {
            line.account.code: await conn.fetchval(
                """INSERT INTO account (code, owner, period, unit, kind, feature)
                   VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
                line.account.code,
                line.account.owner,
                line.account.period,
                line.account.unit,
                line.account.kind,
                line.account.feature,
            )
            for line in entry.lines
        }
        entry_id = await conn.fetchval(
            """INSERT INTO journal_entry (idempotency_key, kind, org, period, rate_card_version,
                   posted_at, lane, seq, prev_hash, hash)
               VALUES ($1, 'usage', 'acme', '2026-10', $2, $3, 1, 1, $4, $5) RETURNING id""",
            entry.key,
            card.version,
            RECEIVED,
            GENESIS_HASH,
            head,
        )
        await conn.execute(  # one statement: the balance trigger checks it whole
            """INSERT INTO entry_line (entry_id, account_id, amount)
               SELECT $1, * FROM unnest($2::bigint[], $3::numeric[])""",
            entry_id,
            [accounts[code] for code, _ in lines],
            [amount for _, amount in lines],
        )
        await conn.execute("UPDATE ledger_lane SET seq = 1, head_hash = $1 WHERE lane = 1", head)
        await conn.execute(
            """INSERT INTO usage_event (source, id, type, org, event_time, period, status,
                   meter, feature, quantity, rate_card_version, raw, stream, stream_id,
                   received_at, entry_id)
               VALUES ('crm-sync', 'r1', 'api.request', 'acme', '2026-10-15T12:00:00Z',
                       '2026-10', 'metered', 'api_request', NULL, 3, $1, $2, 's', '1-0', $3,
                       $4)""",
            card.version,
            raw,
            RECEIVED,
            entry_id,
        )
    await conn.execute(
        """INSERT INTO dead_letter (stream, stream_id, raw, reason, code, received_at)
           VALUES ('s', '2-0', $1, 'unknown organization', 'unknown_organization', $2)""",
        api("r2", count=4, org="hooli"),
        RECEIVED,
    )


async def test_0004_keeps_a_metered_ledger_verifiable(migrations: Migrations) -> None:
    await migrations.upgrade("0002")
    async with raw_connection(migrations.engine) as conn:
        await metered_0002(conn)
    await migrations.upgrade("0003")
    async with raw_connection(migrations.engine) as conn:
        before = dict(await conn.fetchrow(COUNTS))

    await migrations.upgrade("head")

    engine = migrations.engine
    async with raw_connection(engine) as conn:
        assert dict(await conn.fetchrow(COUNTS)) == before
        assert await conn.fetchval("SELECT count(*) FROM producer_source") == 0
    verification = await verify(engine)
    assert verification.ok, verification.findings
    assert (verification.events, verification.entries, verification.tallies) == (1, 1, 1)
    balances = balance_map(await read(engine, org_balances.balances, "acme", "2026-10"))
    assert balances["org/acme/2026-10/api_request/usage"] == 3

    await sources.add(engine, "crm-sync", ["acme"])
    await sources.add(engine, "crm-sync", ["acme", "globex"])
    await sources.add(engine, "batch", None)
    await sources.add(engine, "old", ["acme"])
    await sources.remove(engine, "old")
    async with raw_connection(engine) as conn:
        assert await metering_store.load_sources(conn) == {
            "crm-sync": SourceGrant(False, frozenset({"acme", "globex"})),
            "batch": SourceGrant(True, frozenset()),
        }
