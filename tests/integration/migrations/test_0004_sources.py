"""Revision 0004, producer sources: a 0003 ledger stays whole, and the source registry is
append-only, with organizations that exist.

The first test stores its rows with raw SQL as 0003 stores them; the second (older) one
upgrades a 0003 ledger with a dead letter to head, meters there with today's service (which
writes tables later revisions add) and checks the ledger verifies."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from alembic import command

from support.ledger_support import api, balance_map, urls_of
from support.migrations import LEDGER_0001, Migrations, ledger_0001, unchanged
from tally import bootstrap
from tally.adapters.postgres import ledger_queries, metering_store, sources
from tally.adapters.postgres.connection import make_engine, raw_connection
from tally.adapters.postgres.schema import alembic_config, load_rate_cards
from tally.adapters.postgres.verification import verify
from tally.config import Settings
from tally.domain.rating import SourceGrant
from tally.service_layer import organizations

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


COUNTS = """SELECT (SELECT count(*) FROM usage_event) AS events,
                   (SELECT count(*) FROM journal_entry) AS entries,
                   (SELECT count(*) FROM dead_letter) AS letters,
                   (SELECT string_agg(encode(head_hash, 'hex'), ',' ORDER BY lane)
                      FROM ledger_lane) AS heads"""


async def test_0004_keeps_a_metered_ledger_verifiable(settings: Settings) -> None:
    url = urls_of(settings).database
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0002")
    engine = make_engine(url, owner=True)  # no grants before `tally migrate`
    try:
        async with raw_connection(engine) as conn:  # a dead letter as 0002 stored it
            await conn.execute(
                """INSERT INTO dead_letter (stream, stream_id, raw, reason, code, received_at)
                   VALUES ('s', '2-0', $1, 'unknown organization', 'unknown_organization',
                           now())""",
                api("r2", count=4, org="hooli"),
            )
        await asyncio.to_thread(command.upgrade, alembic_config(url), "0003")
        await load_rate_cards(engine)
        await organizations.add(engine, "acme", "USD")
        await organizations.add(engine, "globex", "EUR")
        async with raw_connection(engine) as conn:
            before = dict(await conn.fetchrow(COUNTS))

        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")

        async with raw_connection(engine) as conn:
            assert dict(await conn.fetchrow(COUNTS)) == before
            assert await conn.fetchval("SELECT count(*) FROM producer_source") == 0
        # metered at head: today's service also writes what later revisions add (usage_total)
        service = bootstrap.metering_service(engine, settings, require_known_sources=False)
        report = await service.process(
            "s", [("1-0", {b"event": api("r1", count=3, source="crm-sync")})]
        )
        assert report.outcomes["1-0"] == "metered"
        assert (await verify(engine)).ok
        balances = balance_map(await ledger_queries.balances(engine, "acme", "2026-10"))
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
            refused = {
                "INSERT INTO producer_source (name, enabled, any_org, orgs)"
                " VALUES ('x', true, false, '{hooli}')": asyncpg.ForeignKeyViolationError,
                "INSERT INTO producer_source (name, enabled, any_org, orgs)"
                " VALUES ('x', true, false, '{}')": asyncpg.CheckViolationError,
                "INSERT INTO producer_source (name, enabled, any_org, orgs)"
                " VALUES ('x', true, true, '{acme}')": asyncpg.CheckViolationError,
                "INSERT INTO producer_source (name, enabled, any_org, orgs)"
                " VALUES ('', true, true, '{}')": asyncpg.CheckViolationError,
                "UPDATE producer_source SET any_org = true": asyncpg.RestrictViolationError,
                "DELETE FROM producer_source": asyncpg.RestrictViolationError,
                "TRUNCATE producer_source": asyncpg.RestrictViolationError,
            }
            for statement, error in refused.items():
                with pytest.raises(error):
                    await conn.execute(statement)
            assert await conn.fetchval("SELECT count(*) FROM producer_source") == 5
    finally:
        await engine.dispose()
