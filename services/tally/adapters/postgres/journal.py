"""Posting journal entries: accounts, a lane of the hash chain, entries and lines.

Writers take any free lane (``FOR UPDATE SKIP LOCKED``), so concurrent writers append to
different chains instead of queueing on one head row. All lines of a batch go in one
INSERT: the balance trigger checks each statement's entries whole.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal

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
            """INSERT INTO entry_line (entry_id, account_id, amount)
               SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::numeric[])""",
            [line[0] for line in lines],
            [line[1] for line in lines],
            [line[2] for line in lines],
        )
        await conn.execute(
            "UPDATE ledger_lane SET seq = $2, head_hash = $3 WHERE lane = $1", lane, seq, head
        )
        periods = (entry.period for entry in entries for _ in entry.lines)
        await _roll_up(
            conn, posted_at, [(p, *line) for p, line in zip(periods, lines, strict=True)]
        )
        return entry_ids


# Rows in key order, so concurrent postings lock shared rollup rows in the same order.
ROLL_UP = """
WITH d AS (
    INSERT INTO account_day AS r (account_id, day, debits, credits, lines, first_entry,
                                  last_entry)
    SELECT a, $1::date, dr, cr, n, f, l
      FROM unnest($2::bigint[], $3::numeric[], $4::numeric[], $5::bigint[], $6::bigint[],
                  $7::bigint[]) AS t(a, dr, cr, n, f, l)
    ON CONFLICT (account_id, day) DO UPDATE
       SET debits = r.debits + excluded.debits, credits = r.credits + excluded.credits,
           lines = r.lines + excluded.lines,
           first_entry = least(r.first_entry, excluded.first_entry),
           last_entry = greatest(r.last_entry, excluded.last_entry)
)
INSERT INTO account_period AS r (account_id, period, debits, credits, lines)
SELECT * FROM unnest($8::bigint[], $9::text[], $10::numeric[], $11::numeric[], $12::bigint[])
ON CONFLICT (account_id, period) DO UPDATE
   SET debits = r.debits + excluded.debits, credits = r.credits + excluded.credits,
       lines = r.lines + excluded.lines
"""


async def _roll_up(
    conn: asyncpg.Connection,
    posted_at: datetime,
    lines: list[tuple[str | None, int, int, Decimal]],  # (period, entry id, account id, amount)
) -> None:
    """Add one posting's lines (all posted at ``posted_at``) to the per-account rollups."""
    day: dict[int, list[Decimal | int]] = {}
    period: dict[tuple[int, str], list[Decimal | int]] = defaultdict(
        lambda: [Decimal(0), Decimal(0), 0]
    )
    for entry_period, entry_id, account_id, amount in lines:
        debit, credit = max(amount, Decimal(0)), max(-amount, Decimal(0))
        row = day.setdefault(account_id, [Decimal(0), Decimal(0), 0, entry_id, entry_id])
        row[0] += debit
        row[1] += credit
        row[2] += 1
        row[3], row[4] = min(row[3], entry_id), max(row[4], entry_id)
        if entry_period is not None:
            total = period[account_id, entry_period]
            total[0] += debit
            total[1] += credit
            total[2] += 1
    days = sorted(day.items())
    periods = sorted(period.items())
    await conn.execute(
        ROLL_UP,
        posted_at.date(),
        [account for account, _ in days],
        *([row[i] for _, row in days] for i in range(5)),
        [account for (account, _), _ in periods],
        [key for (_, key), _ in periods],
        *([row[i] for _, row in periods] for i in range(3)),
    )


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
