"""The close of one organization, pure (``tally.domain.invoicing.close_org``): its invoice
lines and the entries that post them, with the allowance account left at exactly zero."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tally.adapters.ratecard_files import bundled_cards
from tally.domain.allocation import LicenseDay, Seat
from tally.domain.invoicing import (
    Billed,
    CloseInput,
    InvoiceDraft,
    InvoiceMeter,
    LateUsage,
    LineMeter,
    Usage,
    close_org,
)
from tally.domain.ledger import AI_TOKEN, API_REQUEST, Entry, imbalance, usage_entry

CARD = bundled_cards()[-1]
OCT = "2026-10"
ZERO = Decimal(0)


def days(users: int, license: str = "gc2", model: str = "named") -> list[LicenseDay]:
    """A month of daily reports, the highest of which counts."""
    return [
        LicenseDay(license, model, date(2026, 10, day), users=users - (day % 3))  # type: ignore[arg-type]
        for day in range(1, 32)
    ]


def close(
    currency: str = "USD",
    reports: list[LicenseDay] | None = None,
    requests: Decimal | int = 0,
    tokens: dict[str, Decimal] | None = None,
    commitments: dict[Seat, Decimal] | None = None,
    late: tuple[LateUsage, ...] = (),
    purchased: Decimal = ZERO,
) -> InvoiceDraft:
    usage: dict[InvoiceMeter, Usage] = {"api_requests": Usage(Decimal(requests), (1,))}
    if tokens:
        usage["ai_tokens"] = Usage(sum(tokens.values(), Decimal(0)), (2,), tokens)
    return close_org(
        CloseInput(
            "acme",
            currency,
            OCT,
            CARD,
            days(20) if reports is None else reports,
            commitments or {},
            usage,
            late,
            purchased,
        )
    )


def line(draft: InvoiceDraft, meter: LineMeter) -> tuple[Decimal, ...]:
    found = next(item for item in draft.lines if item.meter == meter).priced
    return (found.allocation, found.used, found.overage, found.expired, found.amount)


def allowance_after(draft: InvoiceDraft, requests: Decimal, tokens: Decimal) -> dict[str, Decimal]:
    """The allowance accounts once the usage entries and the close's entries are posted."""
    usage = [
        usage_entry("u1", "acme", OCT, API_REQUEST, {None: requests}, CARD.version),
        usage_entry("u2", "acme", OCT, AI_TOKEN, {"agent_copilot": tokens}, CARD.version),
    ]
    balances: dict[str, Decimal] = defaultdict(Decimal)
    for entry in [*usage, *(posting.entry for posting in draft.postings)]:
        for item in entry.lines:
            if item.account.kind == "allowance":
                balances[item.account.code] += item.amount
    return dict(balances)


def kinds(draft: InvoiceDraft) -> dict[str, str]:
    return {posting.entry.key.rsplit("/", 2)[-2] + "/" + posting.entry.kind: posting.meter
            for posting in draft.postings}  # fmt: skip


def entry(draft: InvoiceDraft, unit: str, kind: str) -> Entry:
    return next(
        p.entry for p in draft.postings if p.entry.kind == kind and f"/{unit}/" in p.entry.key
    )


def test_the_fair_use_worked_example() -> None:
    """gc2 named, 20 users, 3,000,000 requests: allocation 2,200,000, overage 800,000 at
    USD 0.0001 = USD 80.00; the AI tokens of 20 named users (5,000) expire unused."""
    draft = close(requests=3_000_000)
    assert line(draft, "api_requests") == (2_200_000, 3_000_000, 800_000, 0, Decimal("80.00"))
    assert line(draft, "ai_tokens") == (5_000, 0, 0, 5_000, 0)
    assert draft.total == Decimal("80.00")
    assert str(draft.total) == "80.00"
    assert (draft.org, draft.period, draft.currency, draft.rate_card_version) == (
        "acme",
        OCT,
        "USD",
        "2020-01",
    )
    assert "gc2 named 20 x 110,000" in draft.lines[0].description
    assert draft.lines[0].entries == (1,)
    assert kinds(draft) == {
        "api_request/grant": "api_requests",
        "api_request/overage": "api_requests",
        "ai_token/grant": "ai_tokens",
        "ai_token/expiry": "ai_tokens",
    }
    overage = {i.account.code: i.amount for i in entry(draft, API_REQUEST, "overage").lines}
    assert overage == {
        "org/acme/2026-10/api_request/allowance": 800_000,
        "platform/2026-10/api_request/overage": -800_000,
        "org/acme/2026-10/USD/receivable": Decimal("80.00"),
        "platform/2026-10/USD/revenue/api_request": Decimal("-80.0000"),
    }
    for posting in draft.postings:
        assert imbalance(posting.entry.lines) == {}
    assert set(allowance_after(draft, Decimal(3_000_000), Decimal(0)).values()) == {0}


def test_ai_tokens_under_the_allocation_expire_and_cost_nothing() -> None:
    tokens = {"agent_copilot": Decimal("4700"), "voice_bot": Decimal("0.058824")}
    draft = close(reports=days(50, "gc3"), tokens=tokens)
    assert line(draft, "ai_tokens") == (
        12_500,
        Decimal("4700.058824"),
        0,
        Decimal("7799.941176"),
        0,
    )
    assert draft.features == tokens
    assert "used: agent_copilot 4,700, voice_bot 0.058824" in draft.lines[1].description
    assert set(allowance_after(draft, Decimal(0), Decimal("4700.058824")).values()) == {0}


def test_ai_tokens_over_the_allocation_are_billed_whole_rounded_up() -> None:
    reports = [*days(10), *days(2, model="concurrent")]
    draft = close("EUR", reports, tokens={"agent_copilot": Decimal("3300.000001")})
    # 10 x 250 + 2 x 350 = 3,200 tokens; 100.000001 over, billed as 101 at EUR 0.80
    assert line(draft, "ai_tokens") == (3_200, Decimal("3300.000001"), 101, 0, Decimal("80.80"))
    overage = {i.account.code: i.amount for i in entry(draft, AI_TOKEN, "overage").lines}
    assert overage["org/acme/2026-10/ai_token/allowance"] == Decimal("100.000001")
    assert overage["platform/2026-10/ai_token/overage"] == -101
    assert overage["platform/2026-10/ai_token/unit_rounding"] == Decimal("0.999999")
    assert set(allowance_after(draft, Decimal(0), Decimal("3300.000001")).values()) == {0}


def test_jpy_has_no_minor_unit() -> None:
    draft = close("JPY", requests=3_000_000)
    assert line(draft, "api_requests")[-1] == 9_600
    assert str(draft.total) == "9600"
    assert str(close("JPY", requests=3_000_042).total) == "9601"  # 9,600.504 half up


def test_money_is_rounded_half_up_once_and_the_rest_posted_apart() -> None:
    draft = close(requests=3_000_050)  # 800,050 x USD 0.0001 = 80.005
    assert draft.total == Decimal("80.01")  # half up, not to even
    assert close(requests=3_000_049).total == Decimal("80.00")  # 80.0049
    money = {i.account.code: i.amount for i in entry(draft, API_REQUEST, "overage").lines}
    assert money["org/acme/2026-10/USD/receivable"] == Decimal("80.01")
    assert money["platform/2026-10/USD/revenue/api_request"] == Decimal("-80.0050")
    assert money["platform/2026-10/USD/rounding"] == Decimal("-0.0050")


def test_a_commitment_counts_when_higher_and_no_licence_means_no_allocation() -> None:
    committed = close(requests=3_000_000, commitments={("gc2", "named"): Decimal(30)})
    assert line(committed, "api_requests")[:3] == (3_300_000, 3_000_000, 0)
    unlicensed = close(reports=[], requests=10)
    assert line(unlicensed, "api_requests") == (0, 10, 10, 0, Decimal("0.00"))
    assert "no licensed users" in unlicensed.lines[0].description
    assert [p.entry.kind for p in unlicensed.postings] == ["overage"]


def test_purchased_tokens_add_to_the_allocation_and_are_sold_on_their_own_line() -> None:
    """20 named users (5,000 tokens) and 20,000 bought: 25,000 allowed, 24,000 used; the
    purchase is billed at the token price whatever is used, and 1,000 tokens expire."""
    draft = close("EUR", tokens={"agent_copilot": Decimal(24_000)}, purchased=Decimal(20_000))
    assert [item.meter for item in draft.lines] == [
        "api_requests", "ai_tokens", "ai_tokens_purchased",
    ]  # fmt: skip
    assert line(draft, "ai_tokens") == (25_000, 24_000, 0, 1_000, 0)
    assert line(draft, "ai_tokens_purchased") == (20_000, 0, 0, 0, Decimal("16000.00"))
    assert "gc2 named 20 x 250; purchased 20,000" in draft.lines[1].description
    assert draft.total == Decimal("16000.00")
    assert kinds(draft)["ai_token/purchase"] == "ai_tokens_purchased"
    sold = {i.account.code: i.amount for i in entry(draft, AI_TOKEN, "purchase").lines}
    assert sold == {
        "org/acme/2026-10/ai_token/allowance": 20_000,
        "platform/2026-10/ai_token/purchased": -20_000,
        "org/acme/2026-10/EUR/receivable": Decimal("16000.00"),
        "platform/2026-10/EUR/revenue/ai_token": Decimal("-16000.00"),
    }
    grant = {i.account.code: i.amount for i in entry(draft, AI_TOKEN, "grant").lines}
    assert grant["org/acme/2026-10/ai_token/allowance"] == 5_000  # the seats' share only
    assert set(allowance_after(draft, Decimal(0), Decimal(24_000)).values()) == {0}


def test_late_usage_takes_back_what_expired_then_is_overage_at_the_old_price() -> None:
    billed = Billed(7, "2026-09", Decimal(100), Decimal(90), ZERO, Decimal("0.0001"), ZERO)
    late = LateUsage("api_requests", billed, Decimal(25), (9,))
    draft = close(late=(late,))
    [adjustment] = draft.adjustments
    assert (adjustment.original, adjustment.period, adjustment.used) == (7, "2026-09", 25)
    assert (adjustment.unexpired, adjustment.overage, adjustment.amount) == (
        10,
        15,
        Decimal("0.00"),
    )
    late_kinds = [(p.entry.kind, p.original, p.entry.period) for p in draft.postings if p.original]
    assert late_kinds == [("expiry_reversal", 7, "2026-09"), ("overage", 7, "2026-09")]
    assert draft.total == sum((item.priced.amount for item in draft.lines), ZERO)


@given(
    users=st.integers(0, 500),
    requests=st.integers(0, 10**8),
    tokens=st.decimals(min_value=0, max_value=10**6, places=6, allow_nan=False),
    currency=st.sampled_from(sorted(CARD.currencies)),
    purchased=st.integers(0, 10**5),
)
def test_any_close_balances_and_leaves_the_allowance_at_zero(
    users: int, requests: int, tokens: Decimal, currency: str, purchased: int
) -> None:
    reports = [LicenseDay("gc1", "named", date(2026, 10, 1), users=users)]
    draft = close(
        currency, reports, requests, {"agent_copilot": tokens}, purchased=Decimal(purchased)
    )
    for posting in draft.postings:
        assert imbalance(posting.entry.lines) == {}
    assert set(allowance_after(draft, Decimal(requests), tokens).values()) <= {ZERO}
    minor = CARD.currencies[currency]
    assert draft.total == draft.total.quantize(Decimal(1).scaleb(-minor))
    assert draft.total == sum((item.priced.amount for item in draft.lines), ZERO)
