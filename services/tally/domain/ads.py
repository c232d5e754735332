"""The ledger in the AICPA Audit Data Standard (ADS) General Ledger shapes. Pure.

Two shapes, with the standard's field names in camelCase:

- **GL Detail**: one row per entry line. ``journalId`` is the entry id and
  ``journalIdLineNumber`` the line's position in it (1, 2, ...); ``amount`` is unsigned and
  ``amountCreditDebitIndicator`` says ``D`` (Tally's positive amounts) or ``C`` (negative);
  ``fiscalYear`` and ``period`` (1-12) are the entry's billing period, a UTC calendar month;
  ``enteredDate``/``enteredTime`` are when the entry was posted (UTC) and
  ``effectiveDate`` the same day, or the period's last day for an entry posted after its
  period ended (the close, late usage); ``businessUnitCode`` is the organization (or
  ``platform``) and ``source`` the entry's kind (usage, grant, expiry, overage, ...).
- **Trial Balance**: one row per account, beginning and ending balances and the period's
  debits and credits, balances unsigned with a ``D``/``C`` indicator.

Quantities that are not money go out with their unit in ``amountCurrency``: ``api_request``
and ``ai_token`` stand where an ISO 4217 code stands for money, so every row keeps its unit
and a reader sums per ``amountCurrency`` as it would per currency.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple

from tally.domain.ledger import canonical_amount
from tally.domain.period import period_bounds

GL_DETAIL_FIELDS = (
    "journalId",
    "journalIdLineNumber",
    "jeHeaderDescription",
    "jeLineDescription",
    "source",
    "businessUnitCode",
    "fiscalYear",
    "period",
    "effectiveDate",
    "enteredDate",
    "enteredTime",
    "glAccountNumber",
    "amount",
    "amountCreditDebitIndicator",
    "amountCurrency",
)

TRIAL_BALANCE_FIELDS = (
    "glAccountNumber",
    "businessUnitCode",
    "fiscalYear",
    "period",
    "beginningBalance",
    "beginningBalanceDebitCreditIndicator",
    "periodActivityDebit",
    "periodActivityCredit",
    "endingBalance",
    "endingBalanceDebitCreditIndicator",
    "amountCurrency",
)


class LedgerLine(NamedTuple):
    """One entry line as the ledger stores it (positive amount: a debit)."""

    entry_id: int
    line_number: int
    kind: str
    key: str
    org: str | None
    period: str
    posted_at: datetime
    account: str
    account_kind: str
    unit: str
    amount: Decimal


def indicator(amount: Decimal) -> str:
    """``D`` for a debit (or zero), ``C`` for a credit."""
    return "C" if amount < 0 else "D"


@lru_cache(maxsize=256)
def _period_fields(period: str) -> tuple[str, str, date]:
    """(fiscal year, period number, the period's last day) of ``YYYY-MM``."""
    year, month = period.split("-")
    return year, str(int(month)), (period_bounds(period)[1] - timedelta(days=1)).date()


@lru_cache(maxsize=256)
def _dates(posted_at: datetime, period: str) -> tuple[str, str, str]:
    """(effectiveDate, enteredDate, enteredTime): the lines of an entry share them."""
    posted = posted_at.astimezone(UTC)
    entered = posted.date()
    return (
        min(entered, _period_fields(period)[2]).isoformat(),
        entered.isoformat(),
        posted.time().isoformat(),
    )


def gl_detail(line: LedgerLine) -> tuple[str, ...]:
    """The line's GL Detail row, in ``GL_DETAIL_FIELDS`` order."""
    year, month, _ = _period_fields(line.period)
    return (
        str(line.entry_id),
        str(line.line_number),
        f"{line.kind} {line.key}",
        line.account_kind,
        line.kind,
        line.org or "platform",
        year,
        month,
        *_dates(line.posted_at, line.period),
        line.account,
        canonical_amount(abs(line.amount)),
        indicator(line.amount),
        line.unit,
    )


def trial_balance_row(
    account: str,
    owner: str,
    unit: str,
    period: str,
    opening: Decimal,
    debits: Decimal,
    credits: Decimal,
) -> tuple[str, ...]:
    """An account's Trial Balance row, in ``TRIAL_BALANCE_FIELDS`` order."""
    year, month, _ = _period_fields(period)
    closing = opening + debits - credits
    return (
        account,
        owner,
        year,
        month,
        canonical_amount(abs(opening)),
        indicator(opening),
        canonical_amount(debits),
        canonical_amount(credits),
        canonical_amount(abs(closing)),
        indicator(closing),
        unit,
    )
