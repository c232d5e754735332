"""A period's trial balance, per account and unit, from ``account_period``.

A period here is the entries' billing period (``journal_entry.period``), whenever they
were posted: the close's entries and late usage of a month belong to that month. Per
account: the opening balance (every earlier period), the period's debits and credits,
and the closing balance; per unit the totals, where debits equal credits.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import asyncpg
from pydantic import BaseModel

from tally.adapters.postgres.reads import Amount, bulk_snapshot


@dataclass(frozen=True, slots=True)
class TrialBalanceRow:
    """A plain dataclass, not a model: built by the tens of thousands straight from the
    query's typed rows, with nothing to validate (pydantic still serializes it)."""

    account: str
    owner: str
    unit: str
    opening: Amount
    debits: Amount
    credits: Amount
    closing: Amount  # opening + debits - credits

    def cursor_key(self) -> tuple[str, str]:
        return (self.unit, self.account)


class UnitTotals(BaseModel):
    unit: str
    opening: Amount
    debits: Amount
    credits: Amount
    closing: Amount
    balanced: bool  # debits = credits, opening and closing sum to zero


class TrialBalance(BaseModel):
    period: str
    unit: str | None
    rows: list[TrialBalanceRow]
    totals: list[UnitTotals]

    @property
    def balanced(self) -> bool:
        return all(total.balanced for total in self.totals)


QUERY = """
SELECT a.code AS account, a.owner, a.unit, t.opening, t.debits, t.credits,
       t.opening + t.debits - t.credits AS closing
  FROM (SELECT account_id,
               coalesce(sum(debits - credits) FILTER (WHERE period < $1), 0) AS opening,
               coalesce(sum(debits) FILTER (WHERE period = $1), 0) AS debits,
               coalesce(sum(credits) FILTER (WHERE period = $1), 0) AS credits
          FROM account_period WHERE period <= $1 GROUP BY account_id) t
  JOIN account a ON a.id = t.account_id
 WHERE ($2::text IS NULL OR a.unit = $2)
   AND (t.opening <> 0 OR t.debits <> 0 OR t.credits <> 0)
 ORDER BY a.unit COLLATE "C", a.code COLLATE "C"
"""


def totals_of(rows: list[TrialBalanceRow]) -> list[UnitTotals]:
    sums: dict[str, list[Decimal]] = {}
    for row in rows:
        total = sums.setdefault(row.unit, [Decimal(0)] * 4)
        for i, value in enumerate((row.opening, row.debits, row.credits, row.closing)):
            total[i] += value
    return [
        UnitTotals(
            unit=unit,
            opening=opening,
            debits=debits,
            credits=credits,
            closing=closing,
            balanced=debits == credits and opening == 0 and closing == 0,
        )
        for unit, (opening, debits, credits, closing) in sorted(sums.items())
    ]


async def trial_balance(
    conn: asyncpg.Connection, period: str, unit: str | None = None
) -> TrialBalance:
    """Every account with a balance or a movement, by unit and code, and the unit totals."""
    async with bulk_snapshot(conn):
        records = await conn.fetch(QUERY, period, unit)
    rows = [TrialBalanceRow(*record) for record in records]
    return TrialBalance(period=period, unit=unit, rows=rows, totals=totals_of(rows))
