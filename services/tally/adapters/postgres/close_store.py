"""The month close's reads and writes: one chunk of organizations per transaction.

What a chunk reads (usage entries, license reports, commitments, late usage) and what it
writes (entries, invoices, the entries each invoice bills) commit together, so an
organization is either fully invoiced for the period or not at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal

import asyncpg

from tally.adapters.ports.ledger import Journal
from tally.adapters.postgres import allocations, invoice_inputs
from tally.adapters.postgres.seals import seal_due_periods as seal_due_periods  # the close seals
from tally.domain.invoicing import (
    METERS,
    Billed,
    CloseInput,
    InvoiceDraft,
    InvoiceMeter,
    LateUsage,
    Usage,
)
from tally.domain.ledger import AI_TOKEN
from tally.domain.ratecard import RateCard

CANDIDATES = 500  # names tested at a time when orgs_to_close is given no limit
CLOSE_LOCK = 7_461_234_002  # pg_advisory_lock key: one close at a time
METER_OF_UNIT: dict[str, InvoiceMeter] = {unit: meter for meter, unit in METERS.items()}


async def lock(conn: asyncpg.Connection) -> bool:
    """Hold the close lock for this session; True when another close had it (we waited)."""
    if await conn.fetchval("SELECT pg_try_advisory_lock($1)", CLOSE_LOCK):
        return False
    await conn.execute("SELECT pg_advisory_lock($1)", CLOSE_LOCK)
    return True


async def unlock(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", CLOSE_LOCK)


# Organizations still without an invoice for the period that should get one: they existed
# before it ended, or have usage, license reports, purchased tokens or unbilled late usage.
OWES_INVOICE = """
    NOT EXISTS (SELECT 1 FROM invoice i WHERE i.org = o.name AND i.period = $1)
    AND (o.created_at < $2
         OR EXISTS (SELECT 1 FROM journal_entry e
                     WHERE e.org = o.name AND e.period = $1)
         OR EXISTS (SELECT 1 FROM license_usage u
                     WHERE u.org = o.name AND u.period = $1)
         OR EXISTS (SELECT 1 FROM token_purchase p
                     WHERE p.org = o.name AND p.period = $1)
         OR EXISTS (SELECT 1 FROM journal_entry e
                      JOIN invoice i ON i.org = e.org AND i.period = e.period
                     WHERE e.org = o.name AND e.period < $1
                       AND e.kind IN ('usage', 'usage_reversal')
                       AND NOT EXISTS (SELECT 1 FROM billed_entry b
                                        WHERE b.entry_id = e.id)))"""


async def count_orgs_to_close(conn: asyncpg.Connection, period: str, period_end: datetime) -> int:
    """How many organizations the period still owes an invoice (for the progress bar)."""
    count: int = await conn.fetchval(
        f"SELECT count(*) FROM organization o WHERE {OWES_INVOICE}", period, period_end
    )
    return count


async def orgs_to_close(
    conn: asyncpg.Connection,
    period: str,
    period_end: datetime,
    after: str | None = None,
    limit: int | None = None,
) -> list[tuple[str, str]]:
    """The next organizations by name (after ``after``, at most ``limit``) that the period
    still owes an invoice: a close walks them a chunk at a time (keyset), never all at once.

    Names are taken a window of ``limit`` at a time on the primary key, and only that
    window is tested: one query over all organizations with LIMIT is planned for all of
    them (it hashed every entry of the period and read every invoice of it, each page)."""
    window = limit or CANDIDATES
    found: list[tuple[str, str]] = []
    last = after or ""  # every name sorts after ''
    while limit is None or len(found) < limit:
        names = await conn.fetch(
            "SELECT name FROM organization WHERE name > $1 ORDER BY name LIMIT $2", last, window
        )
        if not names:
            break
        last = names[-1]["name"]
        rows = await conn.fetch(
            f"""SELECT o.name, o.currency FROM organization o
                 WHERE o.name = ANY($3::text[]) AND {OWES_INVOICE}
                 ORDER BY o.name""",
            period,
            period_end,
            [row["name"] for row in names],
        )
        found += [(row["name"], row["currency"]) for row in rows]
    return found[:limit]


async def close_inputs(
    conn: asyncpg.Connection, orgs: Sequence[tuple[str, str]], period: str, card: RateCard
) -> list[CloseInput]:
    """Everything the close of these organizations depends on, read in five queries."""
    names = [name for name, _ in orgs]
    days = await allocations.license_days(conn, names, period)
    committed = await allocations.commitments(conn, names, period)
    bought = await allocations.purchased_tokens(conn, names, period)
    usage = await _usage(conn, names, period)
    late = await _late_usage(conn, names, period)
    return [
        CloseInput(
            org=name,
            currency=currency,
            period=period,
            card=card,
            days=days[name],
            commitments=committed[name],
            usage=usage[name],
            late=late[name],
            purchased=bought.get(name, Decimal(0)),
        )
        for name, currency in orgs
    ]


# The usage lines of entry ``e``, by index probes (an entry's lines, each line's account by
# its key): OFFSET 0 keeps the planner from flattening them into a join, which it may plan
# as a hash of every line or account of the ledger, a cost per chunk that grows with it.
USAGE_LINES = """
    SELECT a.unit, a.feature, l.amount FROM entry_line l
     CROSS JOIN LATERAL (SELECT unit, feature, kind FROM account
                          WHERE id = l.account_id OFFSET 0) a
     WHERE l.entry_id = e.id AND a.kind = 'usage' OFFSET 0"""


async def _usage(
    conn: asyncpg.Connection, names: list[str], period: str
) -> dict[str, dict[InvoiceMeter, Usage]]:
    """Per organization and meter: the period's usage entries and their sums."""
    entries: dict[tuple[str, InvoiceMeter], set[int]] = defaultdict(set)
    features: dict[tuple[str, InvoiceMeter], dict[str, Decimal]] = defaultdict(
        lambda: defaultdict(Decimal)
    )
    amounts: dict[tuple[str, InvoiceMeter], Decimal] = defaultdict(Decimal)
    for row in await conn.fetch(
        f"""SELECT e.org, e.id, l.unit, l.feature, l.amount
              FROM journal_entry e
             CROSS JOIN LATERAL ({USAGE_LINES}) l
             WHERE e.kind IN ('usage', 'usage_reversal')
               AND e.org = ANY($1::text[]) AND e.period = $2""",
        names,
        period,
    ):
        key = (row["org"], METER_OF_UNIT[row["unit"]])
        entries[key].add(row["id"])
        amounts[key] += row["amount"]
        if row["unit"] == AI_TOKEN and row["feature"]:
            features[key][row["feature"]] += row["amount"]
    out: dict[str, dict[InvoiceMeter, Usage]] = defaultdict(dict)
    for (org, meter), ids in entries.items():
        out[org][meter] = Usage(
            amounts[(org, meter)], tuple(sorted(ids)), dict(features.get((org, meter), {}))
        )
    return out


async def _late_usage(
    conn: asyncpg.Connection, names: list[str], period: str
) -> dict[str, list[LateUsage]]:
    """Usage entries of invoiced earlier periods that no invoice bills yet."""
    rows = await conn.fetch(
        f"""SELECT e.org, i.number, e.id, l.unit, sum(l.amount) AS amount
              FROM journal_entry e
              JOIN invoice i ON i.org = e.org AND i.period = e.period
             CROSS JOIN LATERAL ({USAGE_LINES}) l
             WHERE e.kind IN ('usage', 'usage_reversal')
               AND e.org = ANY($1::text[]) AND e.period < $2
               AND NOT EXISTS (SELECT 1 FROM billed_entry b WHERE b.entry_id = e.id)
             GROUP BY e.org, i.number, e.id, l.unit""",
        names,
        period,
    )
    if not rows:
        return defaultdict(list)
    billed = await billed_so_far(conn, sorted({row["number"] for row in rows}))
    grouped: dict[tuple[str, int, InvoiceMeter], list[asyncpg.Record]] = defaultdict(list)
    for row in rows:
        grouped[(row["org"], row["number"], METER_OF_UNIT[row["unit"]])].append(row)
    out: dict[str, list[LateUsage]] = defaultdict(list)
    for (org, number, meter), group in sorted(grouped.items()):
        amount = sum((row["amount"] for row in group), Decimal(0))
        entries = tuple(sorted(row["id"] for row in group))
        out[org].append(LateUsage(meter, billed[(number, meter)], amount, entries))
    return out


async def billed_so_far(
    conn: asyncpg.Connection, numbers: list[int], before: int | None = None
) -> dict[tuple[int, InvoiceMeter], Billed]:
    """Per invoice and meter: the original line plus every adjustment billed since (by the
    invoices numbered below ``before``, when given: as it stood when that one was issued)."""
    rows = await conn.fetch(
        """SELECT i.number, i.period, l.meter, l.allocation, l.unit_price,
                  l.used + coalesce(sum(a.used), 0) AS used,
                  l.overage + coalesce(sum(a.overage), 0) AS overage,
                  l.amount + coalesce(sum(a.amount), 0) AS amount
             FROM invoice i
             JOIN invoice_line l ON l.invoice = i.number
             LEFT JOIN invoice_adjustment a ON a.original = i.number AND a.meter = l.meter
                                           AND ($2::bigint IS NULL OR a.invoice < $2)
            WHERE i.number = ANY($1::bigint[])
            GROUP BY i.number, i.period, l.meter, l.allocation, l.unit_price, l.used, l.overage,
                     l.amount""",
        numbers,
        before,
    )
    return {
        (row["number"], row["meter"]): Billed(
            row["number"],
            row["period"],
            row["allocation"],
            row["used"],
            row["overage"],
            row["unit_price"],
            row["amount"],
        )
        for row in rows
    }


async def write_invoices(
    conn: asyncpg.Connection,
    journal: Journal,
    drafts: Sequence[InvoiceDraft],
    issued_at: datetime,
) -> list[int]:
    """Post the drafts' entries and write their invoices, numbered next in the sequence,
    each with its input digest."""
    if not drafts:
        return []
    last = await conn.fetchval(
        "UPDATE invoice_counter SET last = last + $1 RETURNING last", len(drafts)
    )
    numbers = list(range(last - len(drafts) + 1, last + 1))
    postings = [posting for draft in drafts for posting in draft.postings]
    entry_ids = await journal.post(conn, [posting.entry for posting in postings])
    await conn.execute(
        """INSERT INTO invoice (number, org, period, currency, total, rate_card_version,
                                issued_at)
           SELECT n, o, p, c, t, v, $7
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::numeric[],
                         $6::text[]) AS d(n, o, p, c, t, v)""",
        numbers,
        [d.org for d in drafts],
        [d.period for d in drafts],
        [d.currency for d in drafts],
        [d.total for d in drafts],
        [d.rate_card_version for d in drafts],
        issued_at,
    )
    numbered = list(zip(numbers, drafts, strict=True))
    lines = [(n, line) for n, d in numbered for line in d.lines]
    await conn.execute(
        """INSERT INTO invoice_line (invoice, meter, description, allocation, used, overage,
                                     expired, unit_price, amount)
           SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::numeric[],
                                $5::numeric[], $6::numeric[], $7::numeric[], $8::numeric[],
                                $9::numeric[])""",
        [n for n, _ in lines],
        [x.meter for _, x in lines],
        [x.description for _, x in lines],
        [x.priced.allocation for _, x in lines],
        [x.priced.used for _, x in lines],
        [x.priced.overage for _, x in lines],
        [x.priced.expired for _, x in lines],
        [x.priced.unit_price for _, x in lines],
        [x.priced.amount for _, x in lines],
    )
    features = [(n, f, t) for n, d in numbered for f, t in sorted(d.features.items())]
    if features:
        await conn.execute(
            """INSERT INTO invoice_feature (invoice, feature, tokens)
               SELECT * FROM unnest($1::bigint[], $2::text[], $3::numeric[])""",
            *map(list, zip(*features, strict=True)),
        )
    adjustments = [(n, a) for n, d in numbered for a in d.adjustments]
    if adjustments:
        await conn.execute(
            """INSERT INTO invoice_adjustment (invoice, original, period, meter, description,
                                               used, unexpired, overage, unit_price, amount)
               SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[],
                                    $5::text[], $6::numeric[], $7::numeric[], $8::numeric[],
                                    $9::numeric[], $10::numeric[])""",
            [n for n, _ in adjustments],
            [a.original for _, a in adjustments],
            [a.period for _, a in adjustments],
            [a.meter for _, a in adjustments],
            [a.description for _, a in adjustments],
            [a.used for _, a in adjustments],
            [a.unexpired for _, a in adjustments],
            [a.overage for _, a in adjustments],
            [a.unit_price for _, a in adjustments],
            [a.amount for _, a in adjustments],
        )
    await _bill(conn, numbered, entry_ids)
    await invoice_inputs.record(conn, numbers)  # the input digest, with the invoice or not at all
    return numbers


async def _bill(
    conn: asyncpg.Connection,
    numbered: Sequence[tuple[int, InvoiceDraft]],
    entry_ids: Mapping[str, int],
) -> None:
    """Record which invoice line or adjustment bills each entry (usage and close alike)."""
    rows: list[tuple[int, int, str, int | None]] = []
    for number, draft in numbered:
        for line in draft.lines:
            rows.extend((entry, number, line.meter, None) for entry in line.entries)
        for adjustment in draft.adjustments:
            rows.extend(
                (entry, number, adjustment.meter, adjustment.original)
                for entry in adjustment.entries
            )
        rows.extend((entry_ids[p.entry.key], number, p.meter, p.original) for p in draft.postings)
    if rows:
        await conn.execute(
            """INSERT INTO billed_entry (entry_id, invoice, meter, original)
               SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[])""",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
        )


async def record_closed(conn: asyncpg.Connection, period: str, as_of: datetime) -> None:
    """The period has been closed (once: later runs only add late organizations)."""
    await conn.execute(
        """INSERT INTO period_close (period, as_of) VALUES ($1, $2)
           ON CONFLICT (period) DO NOTHING""",
        period,
        as_of,
    )


async def invoice_count(conn: asyncpg.Connection, period: str) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM invoice WHERE period = $1", period)
    return count


async def closed_periods_missing_invoices(conn: asyncpg.Connection, before: str) -> list[str]:
    """Closed periods before ``before`` with usage of an organization that has no invoice
    for them (added after the close, its usage replayed from dead letters)."""
    rows = await conn.fetch(
        """SELECT DISTINCT e.period FROM journal_entry e
             JOIN period_close c ON c.period = e.period
            WHERE e.period < $1 AND e.kind IN ('usage', 'usage_reversal')
              AND NOT EXISTS (SELECT 1 FROM invoice i
                               WHERE i.org = e.org AND i.period = e.period)
            ORDER BY e.period""",
        before,
    )
    return [row["period"] for row in rows]
