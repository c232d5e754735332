"""A period's trial balance, per account and unit, from ``account_period``.

A period here is the entries' billing period (``journal_entry.period``), whenever they
were posted: the close's entries and late usage of a month belong to that month. Per
account: the opening balance (every earlier period), the period's debits and credits,
and the closing balance; per unit the totals, where debits equal credits.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from pydantic import BaseModel

from tally.adapters.postgres.reads import Amount, bulk_snapshot


@dataclass(frozen=True, slots=True)
class TrialBalanceRow:
    """A plain dataclass, not a model: tens of thousands of them (pydantic still validates
    and serializes it, faster than a model each)."""

    account: str
    owner: str
    unit: str
    opening: Amount
    debits: Amount
    credits: Amount
    closing: Amount  # opening + debits - credits


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


# The JSON document (``TrialBalance`` plus ``balanced``) built by PostgreSQL: at tens of
# thousands of accounts, decoding, validating and encoding each row in Python would cost
# more than the whole query. Amounts are JSON strings, as ``Amount`` writes them (a
# numeric's text is its exact digits, never an exponent); units sort as Python sorts them.
DOCUMENT = """
WITH account_rows AS (
    SELECT a.code AS account, a.owner, a.unit, t.opening, t.debits, t.credits,
           t.opening + t.debits - t.credits AS closing
      FROM (SELECT account_id,
                   coalesce(sum(debits - credits) FILTER (WHERE period < $1), 0) AS opening,
                   coalesce(sum(debits) FILTER (WHERE period = $1), 0) AS debits,
                   coalesce(sum(credits) FILTER (WHERE period = $1), 0) AS credits
              FROM account_period WHERE period <= $1 GROUP BY account_id) t
      JOIN account a ON a.id = t.account_id
     WHERE ($2::text IS NULL OR a.unit = $2)
       AND (t.opening <> 0 OR t.debits <> 0 OR t.credits <> 0)),
unit_totals AS (
    SELECT unit, sum(opening) AS opening, sum(debits) AS debits, sum(credits) AS credits,
           sum(closing) AS closing,
           sum(debits) = sum(credits) AND sum(opening) = 0 AND sum(closing) = 0 AS balanced
      FROM account_rows GROUP BY unit)
SELECT json_build_object(
    'period', $1::text,
    'unit', $2::text,
    'rows', coalesce((SELECT json_agg(json_build_object(
                                 'account', account, 'owner', owner, 'unit', unit,
                                 'opening', opening::text, 'debits', debits::text,
                                 'credits', credits::text, 'closing', closing::text)
                             ORDER BY unit COLLATE "C", account COLLATE "C")
                        FROM account_rows), '[]'),
    'totals', coalesce((SELECT json_agg(json_build_object(
                                   'unit', unit, 'opening', opening::text,
                                   'debits', debits::text, 'credits', credits::text,
                                   'closing', closing::text, 'balanced', balanced)
                               ORDER BY unit COLLATE "C")
                          FROM unit_totals), '[]'),
    'balanced', coalesce((SELECT bool_and(balanced) FROM unit_totals), true))::text
"""


async def trial_balance_json(conn: asyncpg.Connection, period: str, unit: str | None = None) -> str:
    """The trial balance as its JSON document: every account with a balance or a
    movement, by unit and code, the unit totals, and whether every unit balances."""
    async with bulk_snapshot(conn):
        document: str = await conn.fetchval(DOCUMENT, period, unit)
    return document


async def trial_balance(
    conn: asyncpg.Connection, period: str, unit: str | None = None
) -> TrialBalance:
    """The trial balance's document as a model (for tables and the ADS shape)."""
    return TrialBalance.model_validate_json(await trial_balance_json(conn, period, unit))
