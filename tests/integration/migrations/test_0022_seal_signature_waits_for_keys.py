"""Revision 0022: a signature made while a new seal key is being published waits for it,
then is refused as the retired key's; before 0022 it passed, by a key already retired."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from integration.migrations.test_0019_seal_signatures import KEY, SIGN, public_key, sealed
from support.migrations import Migrations, issue, ledger_0001
from tally.adapters.postgres.connection import raw_connection

PREVIOUS = "0021"


async def test_0022_a_signature_waits_for_a_key_being_published(migrations: Migrations) -> None:
    await migrations.upgrade(PREVIOUS)
    first, second = public_key("first"), public_key("second")
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
        await issue(conn, 1)
        await conn.execute("INSERT INTO period_close (period, as_of) VALUES ('2026-10', now())")
        for sequence in (1, 2):
            await sealed(conn, sequence)
        await conn.execute(KEY, *first)

    await migrations.upgrade("0022")

    async with (
        raw_connection(migrations.engine) as keygen,
        raw_connection(migrations.engine) as signer,
    ):
        publishing = keygen.transaction()
        await publishing.start()
        await keygen.execute(KEY, *second)  # valid from now, not committed yet
        signing = asyncio.ensure_future(signer.execute(SIGN, "2026-10", 1, first[0], bytes(64)))
        with pytest.raises(TimeoutError):  # it waits on the publication's lock
            await asyncio.wait_for(asyncio.shield(signing), 0.5)
        await publishing.commit()
        with pytest.raises(asyncpg.CheckViolationError, match="not the key valid"):
            await signing  # the first key is retired: the signature is refused
        await signer.execute(SIGN, "2026-10", 1, second[0], bytes(64))
        signed = await signer.fetch("SELECT key_id FROM seal_signature")
    assert [row["key_id"] for row in signed] == [second[0]]


async def test_0022_round_trips(migrations: Migrations) -> None:
    await migrations.round_trip(PREVIOUS, "0022")
