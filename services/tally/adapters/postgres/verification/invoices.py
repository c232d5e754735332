"""Invoices against the ledger, and what only a superuser could still remove."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from tally.adapters.postgres.reads.invoices import invoice_number
from tally.adapters.postgres.verification.registry import Context, check
from tally.domain.invoicing import PURCHASED
from tally.domain.ledger import Account, canonical_amount

BILLED_USAGE = """
    SELECT b.invoice, b.meter, b.original, sum(l.amount) AS amount
      FROM billed_entry b
      JOIN journal_entry e ON e.id = b.entry_id AND e.kind IN ('usage', 'usage_reversal')
      JOIN entry_line l ON l.entry_id = e.id
      JOIN account a ON a.id = l.account_id AND a.kind = 'usage'
     GROUP BY b.invoice, b.meter, b.original"""


@check(
    "invoices",
    "an invoice's total is its receivable movement, each line and adjustment bills exactly its "
    "usage entries, and a closed period's allowance is zero but for late usage still to be "
    "billed",
    "invoice",
    "allowance",
)
async def invoices(ctx: Context) -> None:
    """Invoices against the ledger: money, units, and the allowances their close emptied."""
    conn, result = ctx.conn, ctx.result
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
            WHERE e.kind IN ('usage', 'usage_reversal')
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


@check(
    "token-purchases",
    "the tokens bought for an invoiced or closed period are what its purchase line bills and "
    "its purchase entries post",
    "token purchase",
)
async def token_purchases(ctx: Context) -> None:
    """For every invoiced or closed period (and any purchase entry), the tokens bought are
    what the purchase line bills and the purchase entries put into the allowance: a
    purchase changed, removed or added behind the close's back is named."""
    conn, result = ctx.conn, ctx.result
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


@check(
    "invoice-numbers",
    "invoice numbers run from 1 to the counter, each once",
    "invoice numbers",
)
async def invoice_numbers(ctx: Context) -> None:
    """Numbers 1 to the counter, each once: a deleted invoice leaves a gap."""
    conn, result = ctx.conn, ctx.result
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


@check(
    "closed-invoices",
    "every organization and period the close posted entries for, or that existed when its "
    "period was closed, has its invoice with two meter lines, and every close entry is billed",
    "missing invoice",
    "invoice lines",
    "unbilled close entry",
)
async def closed_invoices(ctx: Context) -> None:
    """What the close leaves behind is still there, even with the counter reset: its own
    entries (in the hash chain) name the organization and period, and a closed period
    names every organization that existed before it ended."""
    conn, result = ctx.conn, ctx.result
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


@check(
    "currencies",
    "an organization's invoices and receivable accounts carry its currency",
    "currency",
)
async def currencies(ctx: Context) -> None:
    """An organization's currency never changes: its invoices and receivables carry it."""
    conn, result = ctx.conn, ctx.result
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
