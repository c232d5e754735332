"""Reading an ADS export back (``tally ledger export``, ``GET /v1/gl-export``): balanced
per journal and per unit, and equal to the trial balance it was made from."""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

from tally.domain import ads

# per account: (opening, debits, credits, closing), as the trial balance has them
Accounts = dict[str, tuple[Decimal, Decimal, Decimal, Decimal]]


def signed(amount: str, indicator: str) -> Decimal:
    return Decimal(amount) if indicator == "D" else -Decimal(amount)


def trial_balance_accounts(rows: list[dict[str, Any]]) -> Accounts:
    """A trial balance's rows (its JSON or the read's models dumped) per account."""
    return {
        row["account"]: (
            Decimal(row["opening"]),
            Decimal(row["debits"]),
            Decimal(row["credits"]),
            Decimal(row["closing"]),
        )
        for row in rows
    }


def assert_round_trips(
    detail: list[dict[str, str]], shaped: list[dict[str, str]], period: str, accounts: Accounts
) -> set[str]:
    """The GL Detail rows balance per journal and unit, number each journal's lines 1..n,
    and sum per account to the trial balance, which the Trial Balance shape repeats; the
    units seen."""
    assert detail and set(detail[0]) == set(ads.GL_DETAIL_FIELDS)
    year, month = period.split("-")
    per_journal: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    per_unit: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    per_account: dict[str, Decimal] = defaultdict(Decimal)
    for row in detail:
        amount = signed(row["amount"], row["amountCreditDebitIndicator"])
        assert Decimal(row["amount"]) >= 0
        per_journal[row["journalId"], row["amountCurrency"]] += amount
        per_unit[row["amountCurrency"]][0 if amount >= 0 else 1] += abs(amount)
        per_account[row["glAccountNumber"]] += amount
        assert (row["fiscalYear"], row["period"]) == (year, str(int(month)))
    assert all(total == 0 for total in per_journal.values())
    assert all(debits == credits for debits, credits in per_unit.values())
    lines_per_journal = Counter(row["journalId"] for row in detail)
    for journal, count in lines_per_journal.items():
        numbers = sorted(int(r["journalIdLineNumber"]) for r in detail if r["journalId"] == journal)
        assert numbers == list(range(1, count + 1))
    assert {account: debits - credits for account, (_, debits, credits, _) in accounts.items()} == (
        dict(per_account)
    )
    assert {
        row["glAccountNumber"]: (
            signed(row["beginningBalance"], row["beginningBalanceDebitCreditIndicator"]),
            Decimal(row["periodActivityDebit"]),
            Decimal(row["periodActivityCredit"]),
            signed(row["endingBalance"], row["endingBalanceDebitCreditIndicator"]),
        )
        for row in shaped
    } == accounts
    return set(per_unit)
