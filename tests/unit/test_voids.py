"""The void rules without a database: who may void what, the reversal's AI tokens under
the rate card's rounding, and a closed period's credit, which lands where closing the month
without the voided usage would have."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tally.adapters.ratecard_files import bundled_cards
from tally.domain.allocation import price_meter
from tally.domain.invoicing import Billed, LateUsage
from tally.domain.ledger import imbalance
from tally.domain.ratecard import RateCardBook
from tally.domain.rating import Rated
from tally.domain.voids import Target, VoidRefused, VoidRequest, judge, reversal_postings
from unit.test_close_one_org import close

CARD = bundled_cards()[-1]
BOOK = RateCardBook([CARD])
OCT = "2026-10"


def target(status: str = "metered", org: str = "acme", voided: bool = False) -> Target:
    return Target(("crm", "e1"), status, org, OCT, voided)


@pytest.mark.parametrize(
    ("found", "org", "code"),
    [
        (None, None, "void_unknown_event"),
        (target("non_billable"), None, "void_not_metered"),
        (target("recorded"), None, "void_not_metered"),
        (target("correction"), None, "void_not_metered"),
        (target(voided=True), None, "already_voided"),
        (target(), "globex", "void_other_organization"),
    ],
)
def test_a_void_the_rules_forbid_is_refused_with_its_code(
    found: Target | None, org: str | None, code: str
) -> None:
    with pytest.raises(VoidRefused) as refused:
        judge(VoidRequest(("crm", "e1"), "why", "cli:ops", org), found)
    assert refused.value.code == code and "(crm, e1)" in refused.value.reason


def test_a_metered_event_is_voided_once_even_within_one_batch() -> None:
    judge(VoidRequest(("crm", "e1"), "why", "cli:ops", "acme"), target())
    with pytest.raises(VoidRefused, match="already voided"):
        judge(VoidRequest(("crm", "e1"), "why", "cli:ops"), target(), [("crm", "e1")])


def minutes(event_id: str, quantity: Decimal) -> Rated:
    return Rated(
        source="crm", id=event_id, type="ai.usage", org="acme",
        time=datetime(2026, 10, 5, tzinfo=UTC), period=OCT, status="metered",
        meter="ai_token", feature="voice_bot", quantity=quantity,
        rate_card_version=CARD.version, raw=b"{}", stream_id="1-0",
    )  # fmt: skip


@given(
    st.lists(st.integers(1, 10_000), min_size=1, max_size=8),
    st.lists(st.integers(1, 10_000), min_size=0, max_size=8),
)
def test_reversals_take_back_exactly_what_the_conversion_loses(
    voided: list[int], kept: list[int]
) -> None:
    """Voice-bot minutes convert at 1 token per 17, rounded up at the token scale: whatever
    the events voided in one batch, the reversals sum to tokens(after) - tokens(before),
    each balanced, one per event."""
    before = Decimal(sum(voided) + sum(kept))
    after = Decimal(sum(kept))
    events = [minutes(f"v{n}", Decimal(q)) for n, q in enumerate(voided)]
    postings = reversal_postings(events, BOOK, {("acme", OCT, "voice_bot", CARD.version): after})
    assert [p.events[0].key for p in postings] == sorted(e.key for e in events)
    taken = sum(
        line.amount for p in postings for line in p.entry.lines if line.account.kind == "usage"
    )
    assert taken == CARD.tokens("voice_bot", after) - CARD.tokens("voice_bot", before)
    assert all(imbalance(p.entry.lines) == {} and p.entry.kind == "usage_reversal"
               for p in postings)  # fmt: skip


@given(
    allocation=st.integers(0, 10**6),
    used=st.integers(0, 10**7),
    share=st.fractions(0, 1),
    currency=st.sampled_from(sorted(CARD.currencies)),
)
def test_a_closed_periods_credit_lands_where_the_month_without_the_void_would_have(
    allocation: int, used: int, share: object, currency: str
) -> None:
    """Invoice a month, then void part of its requests: the original line plus the credit
    adjustment bill what a month that never had the voided requests would have billed."""
    voided = Decimal(int(used * share))  # type: ignore[operator]
    minor, price = CARD.currencies[currency], CARD.api.price[currency]
    original = price_meter(Decimal(allocation), Decimal(used), price, minor, "none")
    billed = Billed(
        7, "2026-09", Decimal(allocation), Decimal(used), original.overage, price, original.amount
    )
    draft = close(currency, late=(LateUsage("api_requests", billed, -voided, (9,)),))
    [credit] = draft.adjustments
    without = price_meter(Decimal(allocation), Decimal(used) - voided, price, minor, "none")
    assert original.overage + credit.overage == without.overage
    assert original.amount + credit.amount == without.amount
    assert credit.amount <= 0 and credit.overage <= 0 and credit.unexpired <= 0
    assert credit.amount == credit.amount.quantize(Decimal(1).scaleb(-minor))
    for posting in draft.postings:
        assert imbalance(posting.entry.lines) == {}
    if voided:
        assert credit.description.startswith(f"voided usage for 2026-09: {voided:,} request")
