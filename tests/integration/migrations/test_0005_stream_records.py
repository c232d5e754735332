"""Revision 0005, stream records: a 0004 ledger stays whole; trims and incidents are
append-only records; an oversized entry's dead letter keeps its length and SHA-256 for good."""

from __future__ import annotations

import hashlib

import asyncpg
import pytest

from support.migrations import LEDGER_0001, Migrations, ledger_0001, unchanged
from tally.adapters.postgres.connection import raw_connection

SHA = hashlib.sha256(b"x" * 70_000).hexdigest()


async def test_0005_adds_stream_records_and_keeps_dead_letters_whole(
    migrations: Migrations,
) -> None:
    await migrations.upgrade("0004")
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
        await conn.execute(
            "INSERT INTO producer_source (name, enabled, any_org, orgs)"
            " VALUES ('crm', true, false, '{acme}')"
        )
    tables = (*LEDGER_0001, "delivery_tally", "producer_source")
    before = await migrations.contents(*tables)

    await migrations.upgrade("0005")

    assert unchanged(before, await migrations.contents(*tables))
    async with raw_connection(migrations.engine) as conn:
        assert await conn.fetchval(
            "SELECT count(*) FROM dead_letter"
            " WHERE original_length IS NULL AND original_sha256 IS NULL"
        ) == len(before["dead_letter"])
        await conn.execute(
            """INSERT INTO dead_letter (stream, stream_id, raw, reason, code, received_at,
                   original_length, original_sha256)
               VALUES ('s3', '1-0', $1, 'too large', 'oversized', now(), 70000, $2)""",
            b"x" * 1024,
            SHA,
        )
        for length, sha in ((0, SHA), (5, "ABC")):  # a positive length, a hex SHA-256
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute(
                    """INSERT INTO dead_letter (stream, stream_id, raw, reason, code,
                           received_at, original_length, original_sha256)
                       VALUES ('s3', '2-0', 'x', 'r', 'c', now(), $1, $2)""",
                    length,
                    sha,
                )
        await conn.execute(  # a replay is recorded
            "UPDATE dead_letter SET replayed_at = now(), replay_outcome = 'dead_letter'"
            " WHERE stream = 's3'"
        )

        await conn.execute(
            """INSERT INTO stream_incident (stream, incident_id, group_name, lost, after_id,
                   before_id, detected_at)
               VALUES ('s1', '1700000000000-0', 'tally', 3, '1-0', '5-0', now())"""
        )
        await conn.execute(
            "INSERT INTO stream_trim (stream, min_id, removed) VALUES ('s1', '4-0', 3)"
        )
        with pytest.raises(asyncpg.UniqueViolationError):  # an incident is recorded once
            await conn.execute(
                """INSERT INTO stream_incident (stream, incident_id, group_name, lost,
                       after_id, before_id, detected_at)
                   VALUES ('s1', '1700000000000-0', 'tally', 3, '1-0', '5-0', now())"""
            )
        checked = [
            """INSERT INTO stream_incident (stream, incident_id, group_name, lost, after_id,
                   before_id, detected_at)
               VALUES ('s1', '1700000000001-0', 'tally', 0, '1-0', '5-0', now())""",
            "INSERT INTO stream_trim (stream, min_id, removed) VALUES ('s1', '4-0', -1)",
        ]
        for statement in checked:
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute(statement)
        refused = [
            "UPDATE dead_letter SET original_length = 1 WHERE stream = 's3'",
            "UPDATE dead_letter SET original_sha256 = NULL WHERE stream = 's3'",
            "UPDATE dead_letter SET original_length = 1 WHERE original_length IS NULL",
            "UPDATE dead_letter SET raw = 'y'",
            "DELETE FROM dead_letter",
            "UPDATE stream_incident SET lost = 1",
            "DELETE FROM stream_incident",
            "TRUNCATE stream_incident",
            "UPDATE stream_trim SET removed = 0",
            "DELETE FROM stream_trim",
            "TRUNCATE stream_trim",
        ]
        for statement in refused:
            with pytest.raises(asyncpg.RestrictViolationError):
                await conn.execute(statement)


async def test_0005_round_trip(migrations: Migrations) -> None:
    at_0004, _ = await migrations.round_trip("0004", "0005")
    await migrations.downgrade("0004")
    resolve_only = ("function", "tally_dead_letter_resolve_only")
    assert await migrations.function_source(resolve_only[1]) == at_0004[resolve_only]
