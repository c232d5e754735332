"""``tally ledger verify``: re-derive what the ledger promises and name every breach.

Checks: each entry balances per unit and has two lines or more; each metered event is
carried by an existing usage entry whose amount is the sum of its events; each feature's
tokens are the conversion of its events; every stored event, rated again from its raw
bytes, matches its columns; each lane of the hash chain is contiguous and every hash
recomputes; the lane heads match; each invoice's total is its receivable movement, each
line and adjustment bills exactly its usage entries, and a closed period's allowance is
zero but for late usage no invoice bills yet; the tokens bought for an invoiced or closed
period are what its purchase line bills and its purchase entries post. And what a
superuser could still remove or rewrite with the triggers off: invoice numbers run from 1
to the counter without a gap; every organization and period the close posted entries for,
or that existed when its period was closed, still has its invoice, two meter lines and
billed close entries; the duplicates, conflicts, dead letters and events of each stream
are what the delivery tallies say (and their chain is intact); an organization's currency
is the one its invoices and receivables carry. Every month seal recomputes from the
entries it covers, and the lane heads it holds still hold the hashes it saw (``--period``:
that period's seals). And the read side's derived data: the per-account rollups by day
(``account_day``) and by period (``account_period``) are what the lines sum to. The daily
rollups (derived data the reports read) equal what the stored events add up to.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres import metering_store, rollups, seals, stream_records
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.invoices import invoice_number
from tally.domain.deliveries import DeliveryCounts, tally_hash
from tally.domain.invoicing import PURCHASED
from tally.domain.ledger import (
    AI_TOKEN,
    API_REQUEST,
    GENESIS_HASH,
    Account,
    CarriedEvent,
    Entry,
    canonical_amount,
    chain_hash,
    events_digest,
)
from tally.domain.ratecard import RateCardBook
from tally.domain.rating import EVENT_FIELD_BYTES, Limits, Rated, rate


@dataclass
class Finding:
    check: str
    detail: str


@dataclass
class Verification:
    entries: int = 0
    lines: int = 0
    events: int = 0
    lanes: int = 0
    tallies: int = 0
    seals: int = 0
    tally_heads: list[dict[str, object]] = field(default_factory=list)  # keep outside, too
    heads: list[dict[str, object]] = field(default_factory=list)  # to keep outside the database
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, check: str, detail: str) -> None:
        self.findings.append(Finding(check, detail))


async def verify(engine: AsyncEngine, period: str | None = None) -> Verification:
    """The whole ledger; ``period`` narrows the seal check to that period's seals."""
    result = Verification()
    async with (
        raw_connection(engine) as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        await _accounts(conn, result)
        await _balance(conn, result)
        await check_rollups(conn, result)
        await _events(conn, result)
        book = await metering_store.load_rate_cards(conn)
        await _ai_totals(conn, result, book)
        await _events_match_their_bytes(conn, result, book)
        await _chain(conn, result)
        await _invoices(conn, result)
        await _purchases(conn, result)
        await _invoice_numbers(conn, result)
        await _closed_invoices(conn, result)
        await _tally_chain(conn, result)
        await _delivery_tallies(conn, result)
        await _currencies(conn, result)
        await _stream_incidents(conn, result)
        await _seals(conn, result, period)
        for difference in await rollups.differences(conn):
            result.add("rollup", difference.describe())
        await _usage_totals(conn, result)
    return result


async def _usage_totals(conn: asyncpg.Connection, result: Verification) -> None:
    """The running usage totals the alerts read are the usage accounts' sums."""
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


async def _seals(conn: asyncpg.Connection, result: Verification, period: str | None) -> None:
    """A sealed month rewritten afterwards, even with every hash recomputed, shows here."""
    stored = await seals.stored(conn, period)
    result.seals = len(stored)
    for detail in await seals.recompute(conn, stored):
        result.add("seal", detail)


async def _stream_incidents(conn: asyncpg.Connection, result: Verification) -> None:
    """Entries removed from a stream before they were read never reached the ledger."""
    for row in await stream_records.incidents(conn):
        result.add(
            "stream incident",
            f"{row['lost']} entries of stream {row['stream']} were removed (trimmed) before "
            f"group {row['group_name']} read them: ids after {row['after_id']} and before "
            f"{row['before_id']}, detected {row['detected_at'].isoformat()}",
        )


async def _accounts(conn: asyncpg.Connection, result: Verification) -> None:
    """An account's code (what the hash covers) names its owner, period, unit and kind."""
    for row in await conn.fetch("SELECT * FROM account ORDER BY id"):
        named = Account(row["owner"], row["period"], row["unit"], row["kind"], row["feature"])
        if named.code != row["code"]:
            result.add("account", f"account {row['code']} is described as {named.code}")


async def _balance(conn: asyncpg.Connection, result: Verification) -> None:
    for row in await conn.fetch(
        """SELECT l.entry_id, a.unit, sum(l.amount) AS total FROM entry_line l
             JOIN account a ON a.id = l.account_id
            GROUP BY l.entry_id, a.unit HAVING sum(l.amount) <> 0 ORDER BY 1"""
    ):
        result.add("unbalanced", f"entry {row['entry_id']}: {row['unit']} sums to {row['total']}")
    for row in await conn.fetch(
        """SELECT e.id, count(l.id) AS n FROM journal_entry e
             LEFT JOIN entry_line l ON l.entry_id = e.id GROUP BY e.id HAVING count(l.id) < 2"""
    ):
        result.add("too few lines", f"entry {row['id']} has {row['n']} line(s)")


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


async def _events(conn: asyncpg.Connection, result: Verification) -> None:
    result.events = await conn.fetchval("SELECT count(*) FROM usage_event")
    for row in await conn.fetch(
        """SELECT v.source, v.id, v.entry_id FROM usage_event v
             LEFT JOIN journal_entry e ON e.id = v.entry_id
            WHERE v.status = 'metered' AND (e.id IS NULL OR e.kind <> 'usage'
                  OR e.org <> v.org OR e.period <> v.period)"""
    ):
        result.add(
            "unlinked event",
            f"metered event ({row['source']}, {row['id']}) has no matching usage entry "
            f"(entry_id {row['entry_id']})",
        )
    for row in await conn.fetch(
        """SELECT e.id FROM journal_entry e
            WHERE e.kind = 'usage'
              AND NOT EXISTS (SELECT 1 FROM usage_event v WHERE v.entry_id = e.id)"""
    ):
        result.add("empty usage entry", f"usage entry {row['id']} carries no event")
    for row in await conn.fetch(
        f"""WITH carried AS (SELECT entry_id, sum(quantity) AS q FROM usage_event
                              WHERE meter = '{API_REQUEST}' GROUP BY entry_id),
                 posted AS (SELECT l.entry_id, sum(l.amount) AS q FROM entry_line l
                              JOIN account a ON a.id = l.account_id
                             WHERE a.unit = '{API_REQUEST}' AND a.kind = 'usage'
                             GROUP BY l.entry_id)
            SELECT c.entry_id, c.q AS carried, p.q AS posted
              FROM carried c LEFT JOIN posted p USING (entry_id)
             WHERE p.q IS DISTINCT FROM c.q"""
    ):
        result.add(
            "usage mismatch",
            f"entry {row['entry_id']} posts {row['posted']} requests, its events count "
            f"{row['carried']}",
        )


async def _ai_totals(conn: asyncpg.Connection, result: Verification, book: RateCardBook) -> None:
    """Tokens per feature equal the conversion of the events' total quantity."""
    cards = {card.version: card for card in book.cards}
    used: dict[tuple[str, str, str, str], Decimal] = {}
    for row in await conn.fetch(
        f"""SELECT org, period, feature, rate_card_version, sum(quantity) AS q FROM usage_event
             WHERE meter = '{AI_TOKEN}' GROUP BY 1, 2, 3, 4"""
    ):
        used[(row["org"], row["period"], row["feature"], row["rate_card_version"])] = row["q"]
    tokens: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for key, quantity in used.items():
        tokens[key[:3]] += cards[key[3]].tokens(key[2], quantity)
    posted = {
        (row["owner"], row["period"], row["feature"]): row["amount"]
        for row in await conn.fetch(
            f"""SELECT a.owner, a.period, a.feature, sum(l.amount) AS amount FROM entry_line l
                  JOIN account a ON a.id = l.account_id
                 WHERE a.unit = '{AI_TOKEN}' AND a.kind = 'usage' GROUP BY 1, 2, 3"""
        )
    }
    for where in sorted(set(tokens) | set(posted)):
        if tokens.get(where, Decimal(0)) != posted.get(where, Decimal(0)):
            result.add(
                "token mismatch",
                f"{where[0]} {where[1]} {where[2]}: ledger has {posted.get(where, 0)} tokens, "
                f"events convert to {tokens.get(where, 0)}",
            )


STORED_AS_RATED = ("type", "org", "period", "status", "meter", "feature", "quantity")


async def _events_match_their_bytes(
    conn: asyncpg.Connection, result: Verification, book: RateCardBook
) -> None:
    """Every stored event, rated again from its raw bytes, gives the columns stored with it
    (and its license row): a column changed behind the application's back shows here.

    The producer registry is not applied: it says who may bill from now on, not who could
    when the event was metered (perhaps with the check off). The stored key, source
    included, is still checked against the raw bytes below."""
    orgs = {row["name"]: row["currency"] for row in await conn.fetch("SELECT * FROM organization")}
    unchecked = Limits(max_event_bytes=2**31, max_future_skew=timedelta(days=365_000))
    query = """SELECT v.*, l.license, l.model, l.users, l.hours, l.day
                 FROM usage_event v LEFT JOIN license_usage l USING (source, id)"""
    async for row in conn.cursor(query, prefetch=5000):
        key = f"({row['source']}, {row['id']})"
        rated = rate(
            row["stream_id"],
            {EVENT_FIELD_BYTES: bytes(row["raw"])},
            orgs,
            book,
            unchecked,
            row["received_at"],
        )
        if not isinstance(rated, Rated):
            result.add("event bytes", f"{key} no longer rates: {rated.reason}")
            continue
        differs = [name for name in STORED_AS_RATED if getattr(rated, name) != row[name]]
        if (rated.source, rated.id) != (row["source"], row["id"]):
            differs.append("key")
        if rated.time != row["event_time"]:
            differs.append("event_time")
        if rated.license is not None and (
            rated.license.license,
            rated.license.model,
            rated.license.users,
            rated.license.hours,
            rated.day,
        ) != (row["license"], row["model"], row["users"], row["hours"], row["day"]):
            differs.append("license usage")
        if rated.license is None and row["license"] is not None:
            differs.append("license usage")
        if differs:
            result.add(
                "event bytes", f"{key}: stored {', '.join(differs)} differ from its raw bytes"
            )


async def _chain(conn: asyncpg.Connection, result: Verification) -> None:
    lines: dict[int, list[tuple[str, Decimal]]] = defaultdict(list)
    for row in await conn.fetch(
        "SELECT l.entry_id, a.code, l.amount FROM entry_line l "
        "JOIN account a ON a.id = l.account_id"
    ):
        lines[row["entry_id"]].append((row["code"], row["amount"]))
        result.lines += 1
    carried: dict[int, list[CarriedEvent]] = defaultdict(list)
    for row in await conn.fetch(
        "SELECT entry_id, source, id, sha256(raw) AS raw_hash FROM usage_event"
        " WHERE entry_id IS NOT NULL"
    ):
        carried[row["entry_id"]].append((row["source"], row["id"], bytes(row["raw_hash"])))
    heads = {row["lane"]: row for row in await conn.fetch("SELECT * FROM ledger_lane ORDER BY 1")}
    result.lanes = len(heads)
    result.heads = [
        {"lane": lane, "seq": row["seq"], "head_hash": bytes(row["head_hash"]).hex()}
        for lane, row in heads.items()
    ]
    rows = await conn.fetch("SELECT * FROM journal_entry ORDER BY lane, seq")
    result.entries += len(rows)

    def expected(row: asyncpg.Record) -> bytes:
        entry = Entry(
            row["idempotency_key"],
            row["kind"],
            row["org"],
            row["period"],
            row["rate_card_version"],
            (),
        )
        return chain_hash(
            bytes(row["prev_hash"]),
            row["lane"],
            row["seq"],
            row["posted_at"],
            entry,
            lines.get(row["id"], []),
            events_digest(carried.get(row["id"], [])),
        )

    _walk_chain(result, JOURNAL_CHAIN, heads, rows, expected, lambda row: f"entry {row['id']}")


@dataclass(frozen=True)
class ChainChecks:
    """What one hash chain's findings are called (the journal's lanes, the tallies')."""

    lane: str  # how a lane is named in a finding
    gap: str
    broken: str
    changed: str
    changed_detail: str
    head: str


JOURNAL_CHAIN = ChainChecks(
    "lane", "chain gap", "chain broken", "hash mismatch", "its contents changed after posting",
    "lane head",
)  # fmt: skip
TALLY_CHAIN = ChainChecks(
    "tally lane", "tally chain", "tally chain", "tally chain",
    "its counts changed after it was recorded", "tally chain",
)  # fmt: skip


def _walk_chain(
    result: Verification,
    checks: ChainChecks,
    heads: dict[int, asyncpg.Record],
    rows: list[asyncpg.Record],
    expected_hash: Callable[[asyncpg.Record], bytes],
    label: Callable[[asyncpg.Record], str],
) -> None:
    """Rows in lane and seq order: each follows its predecessor without a gap, links to its
    hash, hashes to what it holds, and each lane's head is where its chain ends."""
    position: dict[int, tuple[int, bytes]] = {lane: (0, GENESIS_HASH) for lane in heads}
    for row in rows:
        lane = row["lane"]
        seq, head = position.get(lane, (0, GENESIS_HASH))
        where = f"{checks.lane} {lane} seq {row['seq']} ({label(row)})"
        if row["seq"] != seq + 1:
            result.add(checks.gap, f"{where}: expected seq {seq + 1}: a row was removed or added")
        if bytes(row["prev_hash"]) != head:
            result.add(checks.broken, f"{where}: does not link to its predecessor")
        if expected_hash(row) != bytes(row["hash"]):
            result.add(checks.changed, f"{where}: {checks.changed_detail}")
        position[lane] = (row["seq"], bytes(row["hash"]))
    for lane, head_row in sorted(heads.items()):
        seq, last = position[lane]
        if head_row["seq"] != seq or bytes(head_row["head_hash"]) != last:
            result.add(
                checks.head,
                f"{checks.lane} {lane}: head says seq {head_row['seq']}, chain ends at {seq}",
            )


BILLED_USAGE = """
    SELECT b.invoice, b.meter, b.original, sum(l.amount) AS amount
      FROM billed_entry b
      JOIN journal_entry e ON e.id = b.entry_id AND e.kind = 'usage'
      JOIN entry_line l ON l.entry_id = e.id
      JOIN account a ON a.id = l.account_id AND a.kind = 'usage'
     GROUP BY b.invoice, b.meter, b.original"""


async def _invoices(conn: asyncpg.Connection, result: Verification) -> None:
    """Invoices against the ledger: money, units, and the allowances their close emptied."""
    for row in await conn.fetch(
        """SELECT i.number, i.total, coalesce(sum(l.amount), 0) AS receivable
             FROM invoice i
             LEFT JOIN billed_entry b ON b.invoice = i.number
             LEFT JOIN (entry_line l JOIN account a ON a.id = l.account_id
                                                  AND a.kind = 'receivable')
                    ON l.entry_id = b.entry_id
            GROUP BY i.number, i.total HAVING i.total <> coalesce(sum(l.amount), 0)"""
    ):
        result.add(
            "invoice",
            f"invoice {row['number']} totals {row['total']} but its entries move the "
            f"receivable by {row['receivable']}",
        )
    for row in await conn.fetch(
        f"""WITH used AS ({BILLED_USAGE})
            SELECT x.invoice, x.meter, x.original, x.used, coalesce(u.amount, 0) AS billed
              FROM (SELECT invoice, meter, NULL::bigint AS original, used FROM invoice_line
                    UNION ALL
                    SELECT invoice, meter, original, used FROM invoice_adjustment) x
              LEFT JOIN used u ON u.invoice = x.invoice AND u.meter = x.meter
                              AND u.original IS NOT DISTINCT FROM x.original
             WHERE x.used <> coalesce(u.amount, 0)"""
    ):
        what = "line" if row["original"] is None else f"adjustment of {row['original']}"
        result.add(
            "invoice",
            f"invoice {row['invoice']} {row['meter']} "
            f"{what} says {row['used']} used; its usage entries carry {row['billed']}",
        )
    unbilled: dict[str, Decimal] = defaultdict(Decimal)
    for row in await conn.fetch(
        """SELECT e.org, e.period, a.unit, sum(l.amount) AS amount
             FROM journal_entry e
             JOIN invoice i ON i.org = e.org AND i.period = e.period
             JOIN entry_line l ON l.entry_id = e.id
             JOIN account a ON a.id = l.account_id AND a.kind = 'usage'
            WHERE e.kind = 'usage'
              AND NOT EXISTS (SELECT 1 FROM billed_entry b WHERE b.entry_id = e.id)
            GROUP BY e.org, e.period, a.unit"""
    ):
        code = Account(row["org"], row["period"], row["unit"], "allowance").code
        unbilled[code] += row["amount"]
    for row in await conn.fetch(
        """SELECT a.code, coalesce(sum(l.amount), 0) AS balance
             FROM account a
             JOIN invoice i ON i.org = a.owner AND i.period = a.period
             LEFT JOIN entry_line l ON l.account_id = a.id
            WHERE a.kind = 'allowance' GROUP BY a.code"""
    ):
        if row["balance"] != -unbilled.get(row["code"], Decimal(0)):
            result.add(
                "allowance",
                f"{row['code']} is {row['balance']} after its close; late usage not yet "
                f"billed accounts for {-unbilled.get(row['code'], Decimal(0))}",
            )


PurchaseKey = tuple[str, str]  # (organization, period)


async def _purchases(conn: asyncpg.Connection, result: Verification) -> None:
    """For every invoiced or closed period (and any purchase entry), the tokens bought are
    what the purchase line bills and the purchase entries put into the allowance: a
    purchase changed, removed or added behind the close's back is named."""
    bought: dict[PurchaseKey, tuple[Decimal, list[str]]] = {
        (row["org"], row["period"]): (row["tokens"], row["purchases"])
        for row in await conn.fetch(
            """SELECT org, period, sum(tokens) AS tokens,
                      array_agg('#' || id || ' (' || tokens || ')' ORDER BY id) AS purchases
                 FROM token_purchase GROUP BY org, period"""
        )
    }
    invoiced: dict[PurchaseKey, tuple[int, Decimal]] = {
        (row["org"], row["period"]): (row["number"], row["allocation"])
        for row in await conn.fetch(
            """SELECT i.org, i.period, i.number, coalesce(l.allocation, 0) AS allocation
                 FROM invoice i
                 LEFT JOIN invoice_line l ON l.invoice = i.number AND l.meter = $1""",
            PURCHASED,
        )
    }
    posted: dict[PurchaseKey, Decimal] = {
        (row["org"], row["period"]): row["tokens"]
        for row in await conn.fetch(
            """SELECT e.org, e.period, sum(l.amount) AS tokens FROM journal_entry e
                 JOIN entry_line l ON l.entry_id = e.id
                 JOIN account a ON a.id = l.account_id AND a.kind = 'allowance'
                WHERE e.kind = 'purchase' GROUP BY e.org, e.period"""
        )
    }
    closed = {row["period"] for row in await conn.fetch("SELECT period FROM period_close")}
    zero = Decimal(0)
    for key in sorted({*invoiced, *posted, *(key for key in bought if key[1] in closed)}):
        tokens, which = bought.get(key, (zero, []))
        number, billed = invoiced.get(key, (None, zero))
        entries = posted.get(key, zero)
        if tokens != billed or tokens != entries:
            invoice = "no invoice" if number is None else f"invoice {invoice_number(number)}"
            result.add(
                "token purchase",
                f"{key[0]} {key[1]}: purchases {', '.join(which) or 'none'} total "
                f"{canonical_amount(tokens)} tokens; {invoice} bills {canonical_amount(billed)} "
                f"purchased, its purchase entries post {canonical_amount(entries)}",
            )


async def _invoice_numbers(conn: asyncpg.Connection, result: Verification) -> None:
    """Numbers 1 to the counter, each once: a deleted invoice leaves a gap."""
    last = await conn.fetchval("SELECT last FROM invoice_counter")
    missing = [
        row["n"]
        for row in await conn.fetch(
            """SELECT n FROM generate_series(1, $1::bigint) AS n
                WHERE NOT EXISTS (SELECT 1 FROM invoice WHERE number = n) ORDER BY n""",
            last,
        )
    ]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        result.add(
            "invoice numbers",
            f"{len(missing)} invoice number(s) up to the counter's {last} are missing: {shown}",
        )
    beyond = await conn.fetchval("SELECT count(*) FROM invoice WHERE number > $1", last)
    if beyond:
        result.add("invoice numbers", f"{beyond} invoice(s) numbered beyond the counter's {last}")


CLOSE_KINDS = ("grant", "purchase", "expiry", "overage", "expiry_reversal")


async def _closed_invoices(conn: asyncpg.Connection, result: Verification) -> None:
    """What the close leaves behind is still there, even with the counter reset: its own
    entries (in the hash chain) name the organization and period, and a closed period
    names every organization that existed before it ended."""
    for row in await conn.fetch(
        """SELECT DISTINCT e.org, e.period FROM journal_entry e
            WHERE e.kind = ANY($1::text[])
              AND NOT EXISTS (SELECT 1 FROM invoice i
                               WHERE i.org = e.org AND i.period = e.period)
           UNION
           SELECT o.name, c.period FROM period_close c
             JOIN organization o
               ON o.created_at < ((c.period || '-01')::timestamp + interval '1 month')
                                 AT TIME ZONE 'UTC'
            WHERE NOT EXISTS (SELECT 1 FROM invoice i
                               WHERE i.org = o.name AND i.period = c.period)
            ORDER BY 1, 2""",
        list(CLOSE_KINDS),
    ):
        result.add(
            "missing invoice",
            f"{row['org']} {row['period']} was closed but has no invoice",
        )
    for row in await conn.fetch(
        """SELECT i.number, count(l.meter) AS n FROM invoice i
             LEFT JOIN invoice_line l ON l.invoice = i.number AND l.meter <> $1
            GROUP BY i.number HAVING count(l.meter) <> 2 ORDER BY 1""",
        PURCHASED,
    ):
        result.add("invoice lines", f"invoice {row['number']} has {row['n']} meter line(s), not 2")
    for row in await conn.fetch(
        """SELECT e.id, e.kind, e.org, e.period FROM journal_entry e
            WHERE e.kind = ANY($1::text[])
              AND NOT EXISTS (SELECT 1 FROM billed_entry b WHERE b.entry_id = e.id)
            ORDER BY 1""",
        list(CLOSE_KINDS),
    ):
        result.add(
            "unbilled close entry",
            f"{row['kind']} entry {row['id']} of {row['org']} {row['period']} is billed by "
            "no invoice",
        )


async def _tally_chain(conn: asyncpg.Connection, result: Verification) -> None:
    """The delivery tallies' lanes, checked like the journal's."""
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

    _walk_chain(result, TALLY_CHAIN, heads, rows, expected, lambda row: row["stream"])


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


async def _delivery_tallies(conn: asyncpg.Connection, result: Verification) -> None:
    """Per stream, the rows there are what the batches that stored them tallied: a removed
    (or added) event, duplicate, conflict or dead letter, or a letter closed by hand."""
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


async def _currencies(conn: asyncpg.Connection, result: Verification) -> None:
    """An organization's currency never changes: its invoices and receivables carry it."""
    for row in await conn.fetch(
        """SELECT o.name, o.currency, 'invoice ' || i.number AS what, i.currency AS carried
             FROM organization o JOIN invoice i ON i.org = o.name
            WHERE i.currency <> o.currency
           UNION ALL
           SELECT o.name, o.currency, a.code, a.unit
             FROM organization o JOIN account a ON a.owner = o.name AND a.kind = 'receivable'
            WHERE a.unit <> o.currency
            ORDER BY 1, 3"""
    ):
        result.add(
            "currency",
            f"{row['name']} is billed in {row['currency']} but {row['what']} is in "
            f"{row['carried']}",
        )
