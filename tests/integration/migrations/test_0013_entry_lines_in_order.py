"""Revision 0013, an entry's lines in order: a 0012 ledger keeps every row, and reading an
entry's lines in order needs no table access and no sort."""

from __future__ import annotations

from support.migrations import LEDGER_0001, Migrations, ledger_0001, unchanged
from tally.adapters.postgres.connection import raw_connection

PREVIOUS = "0012"  # the revision 0013 follows (the integrator rechains it: change it here)
LINES_IN_ORDER = """
EXPLAIN (COSTS OFF) SELECT id, account_id, amount FROM entry_line
 WHERE entry_id = $1 ORDER BY id"""


async def test_0013_reads_an_entrys_lines_in_order_from_the_index(
    migrations: Migrations,
) -> None:
    await migrations.upgrade(PREVIOUS)
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
    before = await migrations.contents(*LEDGER_0001)

    at_before, at_0013 = await migrations.round_trip(PREVIOUS, "0013")

    assert unchanged(before, await migrations.contents(*LEDGER_0001))
    assert ("index", "entry_line_entry") in at_before
    assert ("index", "entry_line_entry") not in at_0013
    async with raw_connection(migrations.engine) as conn:
        entry = await conn.fetchval("SELECT id FROM journal_entry")
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
            plan = [row[0] for row in await conn.fetch(LINES_IN_ORDER, entry)]
    assert plan[0].startswith("Index Only Scan using entry_line_entry_line"), plan
    assert not any("Sort" in step for step in plan), plan
