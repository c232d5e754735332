"""The read side's reports: the API usage report and allocation tracking (the fair-use
policy and the AI token pricing), with the queries over the rollups they are built from.
Async functions on a connection returning the domain's dataclasses and the JSON shapes'
models, read by the API, the pages and the CLI alike.

Both read the rollups the metering transaction writes, so they never disagree with the
committed events; allocation tracking takes ``used`` from the ledger's usage entries, so it
says what the invoice will.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import asyncpg
from pydantic import BaseModel

from tally.adapters.postgres import rollups
from tally.adapters.postgres.allocations import allocations_so_far
from tally.adapters.postgres.reads import Amount
from tally.adapters.postgres.reads.rate_cards import load_rate_cards
from tally.domain.allocation_status import MeterStatus, Share, daily_tokens, meter_status
from tally.domain.api_usage import (
    Bucket,
    DayRange,
    PairCounts,
    Report,
    by_day,
    count_pairs,
    pairs_report,
    selected,
    tiling,
)
from tally.domain.ledger import AI_TOKEN, API_REQUEST
from tally.domain.period import period_bounds


async def billable_pairs(conn: asyncpg.Connection, org: str, days: DayRange) -> PairCounts:
    """Billable requests per client, URL and bucket over whole UTC days (the report's pairs;
    non-billable client kinds stay out): the tiling's months and month-weeks from the
    spans, its single days from the daily rows (those it takes away negated), and every
    day's deltas (in neither yet)."""
    if days.empty:
        return {}
    cut = tiling(days)
    key = "oauth_client_id, method, template_uri, status"
    # Summed per exact status, bucketed in Python: five FILTERed numeric sums a row cost
    # PostgreSQL 2-4 times this one sum (EXPLAIN ANALYZE, previous 7 days: ~55 vs 130-300 ms).
    rows = await conn.fetch(
        f"""SELECT oauth_client_id, method || ' ' || template_uri, status, sum(requests)::bigint
              FROM (SELECT {key}, requests FROM {rollups.API_SPANS.table}
                     WHERE org = $1 AND billable
                       AND (first_day, last_day) IN (SELECT * FROM unnest($2::date[], $3::date[]))
                    UNION ALL
                    SELECT {key}, requests FROM {rollups.API_USAGE.table}
                     WHERE org = $1 AND billable AND day = ANY($4::date[])
                    UNION ALL
                    SELECT {key}, -requests FROM {rollups.API_USAGE.table}
                     WHERE org = $1 AND billable AND day = ANY($7::date[])
                    UNION ALL
                    SELECT {key}, requests FROM {rollups.API_USAGE.delta}
                     WHERE org = $1 AND billable AND day BETWEEN $5 AND $6) AS r
             GROUP BY oauth_client_id, method, template_uri, status
            HAVING sum(requests) > 0""",
        org,
        [span.first for span in cut.spans],
        [span.last for span in cut.spans],
        cut.days,
        days.first,
        days.last,
        cut.minus,
    )
    return count_pairs(rows)


async def daily_statuses(
    conn: asyncpg.Connection, org: str, days: DayRange, client: str | None, url: str | None
) -> list[tuple[date, int, int]]:
    """Billable requests per (UTC day, status) over whole days (the daily rows and their
    deltas), of one client or one URL (``"GET /api/v2/users"``) or all."""
    if days.empty:
        return []
    key = "day, oauth_client_id, method, template_uri, status, requests"
    rows = await conn.fetch(
        f"""SELECT day, status, sum(requests)::bigint
              FROM (SELECT {key} FROM {rollups.API_USAGE.table}
                     WHERE org = $1 AND billable AND day BETWEEN $2 AND $3
                    UNION ALL
                    SELECT {key} FROM {rollups.API_USAGE.delta}
                     WHERE org = $1 AND billable AND day BETWEEN $2 AND $3) AS r
             WHERE ($4::text IS NULL OR oauth_client_id = $4)
               AND ($5::text IS NULL OR method || ' ' || template_uri = $5)
             GROUP BY day, status HAVING sum(requests) > 0""",
        org,
        days.first,
        days.last,
        client,
        url,
    )
    return [(day, status, count) for day, status, count in rows]


async def daily_requests(conn: asyncpg.Connection, org: str, period: str) -> dict[date, Decimal]:
    """Billable requests per UTC day of a period (the days' totals and their deltas)."""
    start, end = period_bounds(period)
    rows = await conn.fetch(
        f"""SELECT day, sum(requests) AS n
              FROM (SELECT day, requests FROM {rollups.API_BILLABLE_DAYS.table}
                     WHERE org = $1 AND day >= $2 AND day < $3
                    UNION ALL
                    SELECT day, requests FROM {rollups.API_USAGE.delta}
                     WHERE org = $1 AND billable AND day >= $2 AND day < $3) AS r
             GROUP BY day HAVING sum(requests) > 0""",
        org,
        start.date(),
        end.date(),
    )
    return {r["day"]: Decimal(r["n"]) for r in rows}


async def daily_ai_quantities(
    conn: asyncpg.Connection, org: str, period: str
) -> dict[tuple[date, str], Decimal]:
    """AI quantity per (UTC day, feature) of a period, in each feature's own unit."""
    rows = await conn.fetch(
        f"""SELECT day, feature, sum(quantity) AS quantity FROM {rollups.AI_USAGE.rows_sql()} AS r
            WHERE org = $1 AND period = $2 GROUP BY day, feature HAVING sum(quantity) > 0""",
        org,
        period,
    )
    return {(r["day"], r["feature"]): r["quantity"] for r in rows}


async def api_usage_report(
    conn: asyncpg.Connection,
    org: str,
    days: DayRange,
    client: str | None = None,
    url: str | None = None,
) -> Report:
    """The report of an organization's billable requests over whole UTC days
    (``tally.domain.api_usage.day_range`` keeps today out), cross-filtered by one client or
    one URL (``"GET /api/v2/users"``)."""
    return pairs_report(await billable_pairs(conn, org, days), client, url)


@dataclass(frozen=True)
class ReportView:
    """The report as the page shows it under a cross-filter: ``whole`` keeps every client
    and URL (the filtered side's shares in ``filtered_share``), ``selected`` counts only the
    chosen client's or URL's requests, and ``days`` their statuses per UTC day."""

    whole: Report
    selected: Report
    days: list[tuple[date, dict[Bucket, int]]]


async def api_usage_view(
    conn: asyncpg.Connection, org: str, days: DayRange, client: str | None, url: str | None
) -> ReportView:
    pairs = await billable_pairs(conn, org, days)
    whole = pairs_report(pairs, client, url)
    chosen = pairs_report(selected(pairs, client, url)) if client or url else whole
    daily = by_day(days, await daily_statuses(conn, org, days, client, url))
    return ReportView(whole, chosen, daily)


async def latest_period_with_usage(conn: asyncpg.Connection, org: str, upto: str) -> str | None:
    """The latest period up to ``upto`` in which the organization used either meter."""
    period: str | None = await conn.fetchval(
        "SELECT max(period) FROM usage_total WHERE org = $1 AND period <= $2 AND used > 0",
        org,
        upto,
    )
    return period


class MeterShare(BaseModel):
    """A feature's or a week's part of a meter's use."""

    name: str
    used: Amount
    percent: Amount | None  # of the allocation (weeks) or of the use (features)


class MeterDocument(BaseModel):
    """A meter as the API and ``tally usage --format json`` show it."""

    unit: str
    allocation: Amount
    used: Amount
    remaining: Amount
    usage_percent: Amount | None
    overage: Amount
    projected: Amount
    projected_percent: Amount | None
    health: str  # GREEN, AMBER, RED
    projected_unused: Amount
    as_of: datetime
    features: list[MeterShare]
    weeks: list[MeterShare]

    @classmethod
    def of(cls, status: MeterStatus) -> MeterDocument:
        def share(item: Share) -> MeterShare:
            return MeterShare(name=item.name, used=item.used, percent=_percent(item.percent))

        return cls(
            unit=status.unit,
            allocation=status.allocation,
            used=status.used,
            remaining=status.remaining,
            usage_percent=_percent(status.usage_percent),
            overage=status.overage,
            projected=status.projected,
            projected_percent=_percent(status.projected_percent),
            health=status.health.value,
            projected_unused=status.projected_unused,
            as_of=status.as_of,
            features=[share(item) for item in status.features],
            weeks=[share(item) for item in status.weeks],
        )


class TrackingDocument(BaseModel):
    org: str
    period: str
    rate_card: str
    meters: dict[str, MeterDocument]  # api_requests, ai_tokens


@dataclass(frozen=True)
class UsageTracking:
    """Where an organization's two meters stand in a period."""

    org: str
    period: str
    rate_card: str
    api_requests: MeterStatus
    ai_tokens: MeterStatus

    def document(self) -> TrackingDocument:
        """The JSON shape: percentages to two places, the exact figures beside them."""
        return TrackingDocument(
            org=self.org,
            period=self.period,
            rate_card=self.rate_card,
            meters={
                "api_requests": MeterDocument.of(self.api_requests),
                "ai_tokens": MeterDocument.of(self.ai_tokens),
            },
        )


def _percent(value: Decimal | None) -> Decimal | None:
    """Percentages to two places (the exact figures are in ``used`` and ``allocation``)."""
    return None if value is None else value.quantize(Decimal("0.01"))


async def ledger_usage(conn: asyncpg.Connection, org: str, period: str) -> dict[str, Decimal]:
    """The period's usage per unit as the ledger's usage accounts hold it: their
    ``account_period`` rows (debits less credits), which the posting keeps with the lines
    (and verify checks), not the ~50,000 lines a month of 10M events."""
    rows = await conn.fetch(
        """SELECT a.unit, sum(p.debits - p.credits) AS used FROM account a
             JOIN account_period p ON p.account_id = a.id
            WHERE a.owner = $1 AND a.period = $2 AND a.kind = 'usage'
            GROUP BY a.unit""",
        org,
        period,
    )
    return {row["unit"]: row["used"] for row in rows}


async def allocation_tracking(
    conn: asyncpg.Connection, org: str, period: str, now: datetime
) -> UsageTracking:
    """Allocation so far (license reports and commitments), used (the ledger), daily usage
    (the rollups: billable requests; AI tokens as the telescoping conversion of each
    feature's running quantity, so days add up to the ledger's tokens), the projection to
    the period's end at ``now`` and the health. Consistent within one snapshot when called
    in a repeatable-read transaction."""
    start, end = period_bounds(period)
    card = (await load_rate_cards(conn)).in_effect(start)
    if card is None:
        raise LookupError(f"no rate card is in effect for {period}")
    allocation = (await allocations_so_far(conn, [org], period, card))[org]
    used = await ledger_usage(conn, org, period)
    requests = await daily_requests(conn, org, period)
    tokens = daily_tokens(await daily_ai_quantities(conn, org, period), card.tokens)
    as_of = min(now, end)
    return UsageTracking(
        org=org,
        period=period,
        rate_card=card.version,
        api_requests=meter_status(
            period,
            API_REQUEST,
            allocation.api_requests,
            {(day, ""): n for day, n in requests.items()},
            as_of,
            used.get(API_REQUEST, Decimal(0)),
        ),
        ai_tokens=meter_status(
            period, AI_TOKEN, allocation.ai_tokens, tokens, as_of, used.get(AI_TOKEN, Decimal(0))
        ),
    )
