"""``tally report api-usage``, ``tally usage`` and ``tally rollups rebuild`` as an admin runs
them: yesterday's requests reported (today's never), CSV of every section, allocation
tracking, and a tampered rollup found by verify and rebuilt."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from support.cli import tally, tally_all
from support.ledger_support import api, event
from tally.adapters.postgres.connection import raw_connection
from tally.config import Settings
from tally.domain.api_usage import SECTIONS


async def test_reports_csv_usage_and_a_rebuilt_rollup(
    engine: AsyncEngine, owner: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = (midnight - timedelta(hours=1)).isoformat()
    for raw in (
        api("y1", count=40, time=yesterday),
        api("y2", count=2, status=429, time=yesterday),
        api("y3", count=9, kind="ui", time=yesterday),  # not billable: not in the report
        api("t1", count=1000, time=midnight.isoformat()),  # today: never in a report
        event(
            "license.usage",
            "l1",
            {"license": "gc2", "model": "named", "users": 1},
            time=midnight.isoformat(),
        ),
    ):
        await stream.xadd(settings.stream, {b"event": raw})
    assert (await tally(settings, "consume", "--until-idle")).code == 0

    base = ["report", "api-usage", "--org", "acme", "--preset", "previous-7-days"]
    as_json, as_csv, one_csv, table, both, usage = await tally_all(
        settings,
        [*base, "--format", "json"],
        [*base, "--format", "csv"],
        [*base, "--section", "statuses", "--format", "csv"],
        [*base, "--client", "c-42"],
        [*base, "--client", "c-42", "--url", "GET /x"],
        ["usage", "--org", "acme", "--period", midnight.strftime("%Y-%m"), "--format", "json"],
    )
    report = as_json.json()
    assert report["sections"]["totals"] == [
        {"requests": 42, "successful": 40, "failed": 2, "successful %": "95.24",
         "failed %": "4.76", "clients": 1, "urls": 1}
    ]  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert {row["section"] for row in rows} == set(SECTIONS)
    for section, expected in report["sections"].items():  # CSV says what JSON says
        got = [{k: v for k, v in row.items() if k != "section" and v != ""}
               for row in rows if row["section"] == section]  # fmt: skip
        assert got == [{k: str(v) for k, v in r.items() if v is not None} for r in expected], (
            section
        )
    assert one_csv.stdout.splitlines() == [
        "status,requests,share %", "200,40,95.24", "300,0,0.00", "400,0,0.00",
        "429,2,4.76", "500,0,0.00"
    ]  # fmt: skip
    assert table.code == 0 and "filtered by client c-42" in table.said, table
    assert both.code == 1 and "one OAuth client or one URL at a time" in both.said, both

    meters = usage.json()["meters"]
    same_month = midnight.day > 1  # yesterday's requests are this period's too
    assert meters["api_requests"]["used"] == str(1000 + 42 * same_month)  # today's count here
    assert meters["api_requests"]["allocation"] == "110000"

    compacted = await tally(settings, "rollups", "compact")  # the deltas into the daily rows
    assert compacted.code == 0 and "rollups compacted" in compacted.said, compacted
    again = await tally(settings, *base, "--format", "json")  # now read from the daily rows
    assert again.json() == report
    async with raw_connection(owner) as conn:
        await conn.execute("UPDATE api_usage_daily SET requests = requests * 2")
    tampered = await tally(settings, "ledger", "verify", "--format", "json")
    assert tampered.code == 1
    assert {f["check"] for f in json.loads(tampered.stdout)["findings"]} == {"rollup"}
    # the one check that reads the daily rows finds it; a check by another name does not
    named = await tally(settings, "ledger", "verify", "--check", "daily-rollups")
    assert named.code == 1 and "checked (daily-rollups)" in named.said, named
    other = await tally(settings, "ledger", "verify", "--check", "balance")
    assert other.code == 0 and "no findings" in other.said, other
    wrong = await tally(settings, "ledger", "verify", "--check", "rollup")
    assert wrong.code == 2 and "no check named 'rollup'" in wrong.said, wrong
    assert "daily-rollups" in wrong.said, wrong
    rebuilt = await tally(settings, "rollups", "rebuild")
    assert rebuilt.code == 0 and "rollups rebuilt" in rebuilt.said, rebuilt
    assert (await tally(settings, "ledger", "verify")).code == 0
