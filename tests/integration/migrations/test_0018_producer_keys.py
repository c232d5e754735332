"""Revision 0018, producer keys: a 0017 ledger keeps its keys; a producer key names one
registered source (and only a producer key names one), which never changes afterwards."""

from __future__ import annotations

import asyncpg
import pytest

from support.migrations import Migrations
from tally.adapters.postgres.connection import raw_connection

PREVIOUS = "0017"
INSERT = """INSERT INTO api_key (id, name, role, scopes, org, secret_hash)
            VALUES ($1, 'k', $2, $3, $4, $5)"""


async def test_0018_keeps_the_keys_and_binds_a_producer_key_to_a_registered_source(
    migrations: Migrations,
) -> None:
    await migrations.upgrade(PREVIOUS)
    async with raw_connection(migrations.engine) as conn:
        await conn.execute(INSERT, "0123456789ab", "auditor", ["ledger:read"], None, "ab" * 32)
        before = [dict(row) for row in await conn.fetch("SELECT * FROM api_key")]

    await migrations.upgrade("0018")

    async with raw_connection(migrations.engine) as conn:
        after = [dict(row) for row in await conn.fetch("SELECT * FROM api_key")]
        assert [{k: v for k, v in row.items() if k != "source"} for row in after] == before
        assert [row["source"] for row in after] == [None]
        await conn.execute(
            "INSERT INTO producer_source (name, enabled, any_org, orgs) VALUES"
            " ('crm-sync', true, true, '{}')"
        )
        producer = INSERT.replace("secret_hash)", "secret_hash, source)").replace("$5)", "$5, $6)")
        await conn.execute(
            producer, "0123456789ac", "producer", ["events:write"], None, "cd" * 32, "crm-sync"
        )
        for values, error in [
            (("producer", None), asyncpg.CheckViolationError),  # a producer without a source
            (("auditor", "crm-sync"), asyncpg.CheckViolationError),  # a source on a reader
            (("producer", "nobody"), asyncpg.ForeignKeyViolationError),  # not registered
        ]:
            with pytest.raises(error):
                await conn.execute(
                    producer, "0123456789ad", values[0], ["events:write"], None, "ef" * 32,
                    values[1],
                )  # fmt: skip
        with pytest.raises(asyncpg.RestrictViolationError, match="only ever revoked"):
            await conn.execute(  # a revocation is allowed, with another source it is not
                "UPDATE api_key SET revoked_at = now(), source = 'x' WHERE id = '0123456789ac'"
            )
        await conn.execute("UPDATE api_key SET revoked_at = now() WHERE id = '0123456789ac'")
    with pytest.raises(Exception, match="producer keys exist"):  # never deleted: no way down
        await migrations.downgrade(PREVIOUS)


async def test_0018_round_trips(migrations: Migrations) -> None:
    await migrations.round_trip(PREVIOUS, "0018")
