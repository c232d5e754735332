"""Posting journal entries: accounts, a lane of the hash chain, entries and lines.

Writers take any free lane (``FOR UPDATE SKIP LOCKED``), so concurrent writers append to
different chains instead of queueing on one head row. All lines of a batch go in one
INSERT: the balance trigger checks each statement's entries whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import asyncpg

from tally.adapters.ports.ledger import Carried
from tally.domain.ledger import (
    GENESIS_HASH,
    Account,
    Entry,
    chain_hash,
    events_digest,
)


class Journal:
    """Caches account ids across transactions; only committed ids are remembered.
    ``clock`` stamps each posting's ``posted_at`` (tests choose the instants)."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._account_ids: dict[str, int] = {}
        self._pending: dict[str, int] = {}

    def committed(self) -> None:
        self._account_ids.update(self._pending)
        self._pending.clear()

    def rolled_back(self) -> None:
        self._pending.clear()

    async def account_ids(
        self, conn: asyncpg.Connection, accounts: Iterable[Account]
    ) -> dict[str, int]:
        wanted = {account.code: account for account in accounts}
        missing = sorted(code for code in wanted if code not in self._account_ids)
        found: dict[str, int] = {}
        if missing:
            rows = [wanted[code] for code in missing]
            await conn.execute(
                """INSERT INTO account (code, owner, period, unit, kind, feature)
                   SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                        $5::text[], $6::text[])
                   ON CONFLICT (code) DO NOTHING""",
                missing,
                [a.owner for a in rows],
                [a.period for a in rows],
                [a.unit for a in rows],
                [a.kind for a in rows],
                [a.feature for a in rows],
            )
            for record in await conn.fetch(
                "SELECT code, id FROM account WHERE code = ANY($1::text[])", missing
            ):
                found[record["code"]] = record["id"]
            self._pending.update(found)
        return {code: self._account_ids.get(code) or found[code] for code in wanted}

    async def post(
        self, conn: asyncpg.Connection, entries: list[Entry], carried: Carried | None = None
    ) -> dict[str, int]:
        """Post entries in this transaction; returns entry id per idempotency key."""
        if not entries:
            return {}
        carried = carried or {}
        ids = await self.account_ids(
            conn, (line.account for entry in entries for line in entry.lines)
        )
        lane, seq, head = await take_lane(conn, "ledger_lane")
        posted_at = self._clock()
        rows = []
        for entry in entries:
            seq += 1
            digest = events_digest(carried.get(entry.key, ()))
            new_head = chain_hash(
                head,
                lane,
                seq,
                posted_at,
                entry,
                ((line.account.code, line.amount) for line in entry.lines),
                digest,
            )
            rows.append((entry, seq, head, new_head))
            head = new_head
        records = await conn.fetch(
            """INSERT INTO journal_entry (idempotency_key, kind, org, period, rate_card_version,
                                          posted_at, lane, seq, prev_hash, hash)
               SELECT k, kd, o, p, v, $6, $7, s, ph, h
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $8::bigint[], $9::bytea[], $10::bytea[]) AS t(k, kd, o, p, v, s, ph, h)
               RETURNING idempotency_key, id""",
            [e.key for e, *_ in rows],
            [e.kind for e, *_ in rows],
            [e.org for e, *_ in rows],
            [e.period for e, *_ in rows],
            [e.rate_card_version for e, *_ in rows],
            posted_at,
            lane,
            [s for _, s, _, _ in rows],
            [p for _, _, p, _ in rows],
            [h for _, _, _, h in rows],
        )
        entry_ids = {record["idempotency_key"]: record["id"] for record in records}
        lines = [
            (entry_ids[entry.key], ids[line.account.code], line.amount)
            for entry in entries
            for line in entry.lines
        ]
        await conn.execute(
            POST_LINES,
            posted_at.date(),
            [line[0] for line in lines],
            [line[1] for line in lines],
            [line[2] for line in lines],
            [entry.period for entry in entries for _ in entry.lines],
        )
        await conn.execute(
            "UPDATE ledger_lane SET seq = $2, head_hash = $3 WHERE lane = $1", lane, seq, head
        )
        return entry_ids


# The lines, and the per-account rollups they add to, in one statement: PostgreSQL sums the
# lines it was sent (no second copy of them, no aggregation in Python). Rollup rows go in
# key order, so concurrent postings lock shared rows in the same order. The balance
# trigger on entry_line runs at the statement's end, over every line of the posting.
POST_LINES = """
WITH line AS (
    SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::numeric[], $5::text[])
                  AS t(entry_id, account_id, amount, period)
), posted AS (
    INSERT INTO entry_line (entry_id, account_id, amount)
    SELECT entry_id, account_id, amount FROM line
), by_day AS (
    INSERT INTO account_day AS r (account_id, day, debits, credits, lines, first_entry,
                                  last_entry)
    SELECT account_id, $1::date, sum(greatest(amount, 0)), sum(greatest(-amount, 0)),
           count(*), min(entry_id), max(entry_id)
      FROM line GROUP BY account_id ORDER BY account_id
    ON CONFLICT (account_id, day) DO UPDATE
       SET debits = r.debits + excluded.debits, credits = r.credits + excluded.credits,
           lines = r.lines + excluded.lines,
           first_entry = least(r.first_entry, excluded.first_entry),
           last_entry = greatest(r.last_entry, excluded.last_entry)
)
INSERT INTO account_period AS r (account_id, period, debits, credits, lines)
SELECT account_id, period, sum(greatest(amount, 0)), sum(greatest(-amount, 0)), count(*)
  FROM line WHERE period IS NOT NULL GROUP BY account_id, period ORDER BY account_id, period
ON CONFLICT (account_id, period) DO UPDATE
   SET debits = r.debits + excluded.debits, credits = r.credits + excluded.credits,
       lines = r.lines + excluded.lines
"""


async def take_lane(conn: asyncpg.Connection, table: str) -> tuple[int, int, bytes]:
    """A free lane of a chain (``ledger_lane``, ``delivery_lane``), locked until commit;
    waits for a random one only when all are busy."""
    record = await conn.fetchrow(
        f"SELECT lane, seq, head_hash FROM {table} ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED"
    )
    if record is None:
        record = await conn.fetchrow(
            f"SELECT lane, seq, head_hash FROM {table} "
            f"WHERE lane = (SELECT lane FROM {table} ORDER BY random() LIMIT 1) FOR UPDATE"
        )
    assert record is not None, f"{table} is empty: run `tally migrate`"
    return record["lane"], record["seq"], bytes(record["head_hash"] or GENESIS_HASH)
