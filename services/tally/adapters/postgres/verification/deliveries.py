"""What each stream delivered, against the tallies its batches chained."""

from __future__ import annotations

import asyncpg

from tally.adapters.postgres.verification.chains import TALLY_CHAIN, walk_chain
from tally.adapters.postgres.verification.registry import Context, check
from tally.domain.deliveries import DeliveryCounts, tally_hash


@check(
    "tally-chain",
    "the delivery tallies' lanes run without a gap, link, recompute and end at their heads",
    "tally chain",
)
async def tally_chain(ctx: Context) -> None:
    """The delivery tallies' lanes, checked like the journal's."""
    conn, result = ctx.conn, ctx.result
    heads = {row["lane"]: row for row in await conn.fetch("SELECT * FROM delivery_lane")}
    result.tally_heads = [
        {"lane": lane, "seq": row["seq"], "head_hash": bytes(row["head_hash"]).hex()}
        for lane, row in sorted(heads.items())
    ]
    rows = await conn.fetch("SELECT * FROM delivery_tally ORDER BY lane, seq")
    result.tallies += len(rows)

    def expected(row: asyncpg.Record) -> bytes:
        counts = DeliveryCounts(
            row["events"],
            row["duplicates"],
            row["conflicts"],
            row["dead_letters"],
            row["replayed"],
        )
        return tally_hash(
            bytes(row["prev_hash"]),
            row["lane"],
            row["seq"],
            row["stream"],
            row["recorded_at"],
            counts,
        )

    walk_chain(result, TALLY_CHAIN, heads, rows, expected, lambda row: row["stream"])


STORED_DELIVERIES = """
    SELECT stream, sum(events) AS events, sum(duplicates) AS duplicates,
           sum(conflicts) AS conflicts, sum(dead_letters) AS dead_letters,
           sum(replayed) AS replayed
      FROM (SELECT stream, 1 AS events, 0 AS duplicates, 0 AS conflicts, 0 AS dead_letters,
                   0 AS replayed FROM usage_event
            UNION ALL SELECT stream, 0, 1, 0, 0, 0 FROM duplicate_delivery
            UNION ALL SELECT stream, 0, 0, 1, 0, 0 FROM event_conflict
            UNION ALL SELECT stream, 0, 0, 0, 1, (replayed_at IS NOT NULL)::int
                        FROM dead_letter) d
     GROUP BY stream"""
TALLIED_DELIVERIES = """
    SELECT stream, sum(events) AS events, sum(duplicates) AS duplicates,
           sum(conflicts) AS conflicts, sum(dead_letters) AS dead_letters,
           sum(replayed) AS replayed
      FROM delivery_tally GROUP BY stream"""
TALLIED = ("events", "duplicates", "conflicts", "dead_letters", "replayed")


@check(
    "delivery-tallies",
    "per stream, the events, duplicates, conflicts, dead letters and replayed letters stored "
    "are what the batches tallied",
    "delivery tally",
)
async def delivery_tallies(ctx: Context) -> None:
    """Per stream, the rows there are what the batches that stored them tallied: a removed
    (or added) event, duplicate, conflict or dead letter, or a letter closed by hand."""
    conn, result = ctx.conn, ctx.result
    stored = {row["stream"]: row for row in await conn.fetch(STORED_DELIVERIES)}
    tallied = {row["stream"]: row for row in await conn.fetch(TALLIED_DELIVERIES)}
    for stream in sorted(set(stored) | set(tallied)):
        for name in TALLIED:
            there = stored[stream][name] if stream in stored else 0
            recorded = tallied[stream][name] if stream in tallied else 0
            if there != recorded:
                what = "replayed dead letters" if name == "replayed" else name.replace("_", " ")
                result.add(
                    "delivery tally",
                    f"stream {stream}: {there} {what} stored, the batches tallied {recorded}",
                )
