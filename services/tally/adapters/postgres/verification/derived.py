"""Derived data (rollups, running totals) recomputed from what it derives from."""

from __future__ import annotations

import asyncpg

from tally.adapters.postgres import rollups
from tally.adapters.postgres.verification.registry import Context, Verification, check

# Each rollup recomputed from the lines beside what is stored, where they differ.
ROLLUPS = {
    "account_day": (
        "(e.posted_at AT TIME ZONE 'UTC')::date",
        "day",
        ", min(e.id) AS first_entry, max(e.id) AS last_entry",
        ", first_entry, last_entry",
    ),
    "account_period": ("e.period", "period", "", ""),
}


async def check_rollups(conn: asyncpg.Connection, result: Verification) -> None:
    """The per-account rollups against the lines (also what ``tally bench api`` checks)."""
    for table, (expression, key, extra, stored_extra) in ROLLUPS.items():
        columns = "debits, credits, lines" + stored_extra
        for row in await conn.fetch(
            f"""WITH computed AS (
                    SELECT l.account_id, {expression} AS {key},
                           sum(greatest(l.amount, 0)) AS debits,
                           sum(greatest(-l.amount, 0)) AS credits, count(*) AS lines {extra}
                      FROM entry_line l JOIN journal_entry e ON e.id = l.entry_id
                     WHERE {expression} IS NOT NULL GROUP BY 1, 2),
                stored AS (SELECT account_id, {key}, {columns} FROM {table})
                SELECT coalesce(a.code, s.account_id::text, c.account_id::text) AS account,
                       coalesce(s.{key}, c.{key})::text AS key,
                       CASE WHEN s.account_id IS NULL THEN 'nothing' ELSE row(s.*)::text
                       END AS stored,
                       CASE WHEN c.account_id IS NULL THEN 'nothing' ELSE row(c.*)::text
                       END AS computed
                  FROM computed c FULL JOIN stored s USING (account_id, {key})
                  LEFT JOIN account a ON a.id = coalesce(s.account_id, c.account_id)
                 WHERE row(c.*) IS DISTINCT FROM row(s.*)
                 ORDER BY 1, 2"""
        ):
            result.add(
                "rollup",
                f"{table} of {row['account']} for {key} {row['key']}: stored "
                f"{row['stored']}, the lines sum to {row['computed']} "
                f"(account id, {key}, {columns})",
            )


@check(
    "account-rollups",
    "the per-account rollups by day (account_day) and by period (account_period) are what "
    "the lines sum to",
    "rollup",
)
async def account_rollups(ctx: Context) -> None:
    await check_rollups(ctx.conn, ctx.result)


@check(
    "daily-rollups",
    "the daily usage rollups (and their deltas) the reports read equal what the stored "
    "events add up to",
    "rollup",
)
async def daily_rollups(ctx: Context) -> None:
    for difference in await rollups.differences(ctx.conn):
        ctx.result.add("rollup", difference.describe())


@check(
    "usage-totals",
    "the running usage totals the alerts read are the usage accounts' sums",
    "usage total",
)
async def usage_totals(ctx: Context) -> None:
    """The running usage totals the alerts read are the usage accounts' sums."""
    conn, result = ctx.conn, ctx.result
    for row in await conn.fetch(
        """WITH ledger AS (
               SELECT a.owner AS org, a.period, a.unit AS meter, sum(l.amount) AS used
                 FROM account a JOIN entry_line l ON l.account_id = a.id
                WHERE a.kind = 'usage' GROUP BY 1, 2, 3)
           SELECT coalesce(t.org, g.org) AS org, coalesce(t.period, g.period) AS period,
                  coalesce(t.meter, g.meter) AS meter, t.used AS stored, g.used AS ledger
             FROM usage_total t FULL JOIN ledger g USING (org, period, meter)
            WHERE t.used IS DISTINCT FROM g.used
              AND NOT (t.used IS NULL AND g.used = 0) AND NOT (g.used IS NULL AND t.used = 0)
            ORDER BY 1, 2, 3"""
    ):
        result.add(
            "usage total",
            f"{row['org']} {row['period']} {row['meter']}: the alerts' running total is "
            f"{row['stored']}, the usage accounts hold {row['ledger']}",
        )


@check(
    "ai-totals",
    "the running AI quantities the next batch converts from are the events' quantities, the "
    "voided ones left out",
    "ai total",
)
async def ai_totals(ctx: Context) -> None:
    """``meter_total`` (each AI feature's running quantity per organization, period and rate
    card) is what its events add up to: a batch's tokens are converted from it, and a void
    may shrink it, so it is checked on its own, not only through the tokens posted."""
    conn, result = ctx.conn, ctx.result
    for row in await conn.fetch(
        """WITH events AS (
               SELECT org, period, feature, rate_card_version, sum(quantity) AS quantity
                 FROM usage_event v
                WHERE meter = 'ai_token' AND feature IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM event_void x
                                   WHERE x.source = v.source AND x.id = v.id)
                GROUP BY 1, 2, 3, 4)
           SELECT org, period, feature, rate_card_version, t.quantity AS stored,
                  e.quantity AS events
             FROM meter_total t FULL JOIN events e USING (org, period, feature, rate_card_version)
            WHERE t.quantity IS DISTINCT FROM e.quantity
              AND NOT (t.quantity = 0 AND e.quantity IS NULL)
            ORDER BY 1, 2, 3, 4"""
    ):
        result.add(
            "ai total",
            f"{row['org']} {row['period']} {row['feature']} (rate card "
            f"{row['rate_card_version']}): the running quantity is {row['stored']}, its events "
            f"add up to {row['events']}",
        )
