"""Accounts with their current totals (from ``account_period``, not the lines)."""

from __future__ import annotations

from pydantic import BaseModel

from tally.adapters.postgres.reads import Amount
from tally.adapters.postgres.reads.listing import KeyedRow, Listing, in_order
from tally.domain.pagination import Key


class AccountFilter(BaseModel):
    org: str | None = None  # owner: an organization or "platform"
    period: str | None = None
    unit: str | None = None
    kind: str | None = None


class AccountRow(KeyedRow):
    id: int
    code: str
    owner: str
    period: str | None
    unit: str
    kind: str
    feature: str | None
    debits: Amount
    credits: Amount
    balance: Amount  # debits - credits

    def cursor_key(self) -> Key:
        return (self.code,)


QUERY = """
SELECT a.id, a.code, a.owner, a.period, a.unit, a.kind, a.feature,
       coalesce(t.debits, 0) AS debits, coalesce(t.credits, 0) AS credits,
       coalesce(t.debits - t.credits, 0) AS balance
  FROM account a
  LEFT JOIN LATERAL (SELECT sum(debits) AS debits, sum(credits) AS credits
                       FROM account_period p WHERE p.account_id = a.id) t ON true
 WHERE ($1::text IS NULL OR a.owner = $1) AND ($2::text IS NULL OR a.period = $2)
   AND ($3::text IS NULL OR a.unit = $3) AND ($4::text IS NULL OR a.kind = $4)
   AND ($5::text IS NULL OR a.code > $5)
 ORDER BY a.code"""


def account_listing(filters: AccountFilter) -> Listing[AccountRow]:
    """Accounts in code order."""
    return Listing(
        "accounts",
        QUERY,
        in_order(filters),
        AccountRow,
        (str,),
    )
