"""Migration 0004 on a ledger with data: what was metered stays, and the source registry
is append-only with organizations that exist."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from alembic import command

from ledger_support import api, balance_map, urls_of
from tally import bootstrap
from tally.adapters.postgres import ledger_queries, metering_store, sources
from tally.adapters.postgres.connection import make_engine, raw_connection
from tally.adapters.postgres.schema import alembic_config, load_rate_cards
from tally.adapters.postgres.verification import verify
from tally.config import Settings
from tally.domain.rating import SourceGrant
from tally.service_layer import organizations

COUNTS = """SELECT (SELECT count(*) FROM usage_event) AS events,
                   (SELECT count(*) FROM journal_entry) AS entries,
                   (SELECT count(*) FROM dead_letter) AS letters,
                   (SELECT string_agg(encode(head_hash, 'hex'), ',' ORDER BY lane)
                      FROM ledger_lane) AS heads"""


async def test_0004_keeps_the_ledger_and_adds_an_append_only_registry(settings: Settings) -> None:
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
        service = bootstrap.metering_service(engine, settings, require_known_sources=False)
        report = await service.process(
            "s", [("1-0", {b"event": api("r1", count=3, source="crm-sync")})]
        )
        assert report.outcomes["1-0"] == "metered"
        async with raw_connection(engine) as conn:
            before = dict(await conn.fetchrow(COUNTS))

        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")

        async with raw_connection(engine) as conn:
            assert dict(await conn.fetchrow(COUNTS)) == before
            assert await conn.fetchval("SELECT count(*) FROM producer_source") == 0
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
