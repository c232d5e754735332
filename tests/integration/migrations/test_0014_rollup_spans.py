"""Revision 0014, rollup spans: a 0013 ledger's daily rows are summed into their month-weeks,
months and billable days (its deltas stay deltas: compaction folds them later), the SQL
``usage_spans`` agrees with the domain's ``spans_of``, and only whole spans are accepted."""

from __future__ import annotations

from datetime import date, timedelta

import asyncpg
import pytest

from support.migrations import LEDGER_0001, Migrations, ledger_0001, unchanged
from tally.adapters.postgres.connection import raw_connection
from tally.domain.api_usage import spans_of

PREVIOUS = "0013"  # the revision 0014 follows (the integrator rechains it: change it here)
ROLLUPS = ("api_usage_daily", "ai_usage_daily", "api_usage_delta")
DAILY = [  # (day, client, status, billable, requests)
    ("2026-10-07", "c-1", 200, True, 5),
    ("2026-10-08", "c-1", 200, True, 2),
    ("2026-10-31", "c-1", 200, True, 3),
    ("2026-10-31", "c-2", 429, True, 7),
    ("2026-10-31", "c-3", 200, False, 4),
    ("2026-11-01", "c-1", 200, True, 1),
]


async def test_0014_sums_the_daily_rows_into_spans_and_billable_days(
    migrations: Migrations,
) -> None:
    await migrations.upgrade(PREVIOUS)
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
        for day, client, status, billable, requests in DAILY:
            await conn.execute(
                """INSERT INTO api_usage_daily (org, day, oauth_client_id, template_uri, method,
                       status, billable, requests)
                   VALUES ('acme', $1, $2, '/users', 'GET', $3, $4, $5)""",
                date.fromisoformat(day), client, status, billable, requests,
            )  # fmt: skip
        await conn.execute(
            """INSERT INTO api_usage_delta (org, day, oauth_client_id, template_uri, method,
                   status, billable, requests)
               VALUES ('acme', '2026-10-07', 'c-1', '/users', 'GET', 200, true, 100)"""
        )
    before = await migrations.contents(*LEDGER_0001, *ROLLUPS)

    await migrations.upgrade("0014")

    assert unchanged(before, await migrations.contents(*LEDGER_0001, *ROLLUPS))
    async with raw_connection(migrations.engine) as conn:
        spans = {
            (str(r["first_day"]), str(r["last_day"]), r["oauth_client_id"], r["billable"]): r[
                "requests"
            ]
            for r in await conn.fetch("SELECT * FROM api_usage_span")
        }
        days = {
            str(r["day"]): r["requests"]
            for r in await conn.fetch("SELECT * FROM api_billable_daily")
        }
        assert spans == {
            ("2026-10-01", "2026-10-07", "c-1", True): 5,
            ("2026-10-08", "2026-10-14", "c-1", True): 2,
            ("2026-10-29", "2026-10-31", "c-1", True): 3,
            ("2026-10-29", "2026-10-31", "c-2", True): 7,
            ("2026-10-29", "2026-10-31", "c-3", False): 4,
            ("2026-10-01", "2026-10-31", "c-1", True): 10,
            ("2026-10-01", "2026-10-31", "c-2", True): 7,
            ("2026-10-01", "2026-10-31", "c-3", False): 4,
            ("2026-11-01", "2026-11-07", "c-1", True): 1,
            ("2026-11-01", "2026-11-30", "c-1", True): 1,
        }
        assert days == {"2026-10-07": 5, "2026-10-08": 2, "2026-10-31": 10, "2026-11-01": 1}
        refused = [  # not a month-week or month; a negative count
            ("2026-10-02", "2026-10-08", 1),
            ("2026-10-29", "2026-11-04", 1),
            ("2026-10-01", "2026-10-30", 1),
            ("2026-10-01", "2026-10-07", -1),
        ]
        for first, last, requests in refused:
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute(
                    """INSERT INTO api_usage_span (org, first_day, last_day, oauth_client_id,
                           template_uri, method, status, billable, requests)
                       VALUES ('acme', $1, $2, 'c-9', '/x', 'GET', 200, true, $3)""",
                    date.fromisoformat(first), date.fromisoformat(last), requests,
                )  # fmt: skip
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO api_billable_daily (org, day, requests) VALUES ('x', '2026-10-01', -1)"
            )


async def test_0014_usage_spans_agrees_with_the_domain(migrations: Migrations) -> None:
    await migrations.upgrade("0014")
    days = [date(2023, 12, 1) + timedelta(days=n) for n in range(3 * 366)]  # 2024 leaps
    async with raw_connection(migrations.engine) as conn:
        got = await conn.fetch(
            """SELECT s.first_day, s.last_day
                 FROM unnest($1::date[]) WITH ORDINALITY AS d(day, n)
                CROSS JOIN LATERAL usage_spans(d.day) WITH ORDINALITY AS s(first_day, last_day, k)
                ORDER BY d.n, s.k""",
            days,
        )
    expected = [(span.first, span.last) for day in days for span in spans_of(day)]
    assert [(r["first_day"], r["last_day"]) for r in got] == expected


async def test_0014_round_trip(migrations: Migrations) -> None:
    await migrations.round_trip(PREVIOUS, "0014")
