"""Purchased AI tokens against real PostgreSQL (the AI token pricing page: "purchase
additional tokens", no minimum, monthly, no carryover): the close adds them to their
period's allocation only, bills them on a line of their own, posts a ``purchase`` entry,
empties the allowance; a closed period refuses them; ``tally ledger verify`` names a
purchase changed behind its back."""

from __future__ import annotations

import asyncio
import itertools
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from support.close_support import after, balance, close, document, license_day, line, meter
from support.ledger_support import ai
from tally import bootstrap
from tally.adapters.postgres import close_store
from tally.adapters.postgres.connection import raw_connection, raw_transaction
from tally.adapters.postgres.verification import verify
from tally.adapters.ratecard_files import bundled_cards
from tally.service_layer import organizations
from tally.service_layer.metering import MeteringService
from tally.service_layer.organizations import OrganizationError

DEC, JAN = "2025-12", "2026-01"
CARD = bundled_cards()[-1]
runs = itertools.count()


async def buy(engine: AsyncEngine, org: str, period: str, tokens: int | Decimal) -> int:
    return await organizations.buy_tokens(
        bootstrap.database(engine),
        bootstrap.token_purchases(),
        org,
        period,
        Decimal(tokens),
        "PO-1",
    )


def month(
    org: str, period: str, users: int, tokens: int | Decimal, source: str = "test"
) -> list[bytes]:
    """A month of a gc2 named contact centre: its seats, and its Agent Copilot tokens."""
    time = f"{period}-20T12:00:00Z"
    return [
        payload.replace(b'"source": "test"', f'"source": "{source}"'.encode())
        for payload in (
            license_day(f"{org}-{period}-lic", "gc2", "named", users, org=org, day=f"{period}-02"),
            ai(
                f"{org}-{period}-ai",
                "agent_copilot",
                f"{Decimal(tokens):f}",
                "token",
                org=org,
                time=time,
            ),
        )
    ]


async def test_seed_003_seasonal_spike_covered_by_a_purchase_then_no_carryover(
    engine: AsyncEngine, service: MeteringService
) -> None:
    """Scenario 1, the holiday retailer: a base of 30,000 tokens a month (120 named gc2
    users), 20,000 more bought for December's spike; January is back to the base, and what
    December left unused is gone."""
    await organizations.add(bootstrap.database(engine), "retail", "USD")
    await buy(engine, "retail", DEC, 15_000)
    await buy(engine, "retail", DEC, 5_000)  # two orders, one line
    await meter(service, [*month("retail", DEC, 120, 48_000), *month("retail", JAN, 120, 31_000)])

    first = await close(engine, DEC)
    december = await document(engine, "retail", DEC)
    assert [item["meter"] for item in december["lines"]] == [
        "api_requests", "ai_tokens", "ai_tokens_purchased",
    ]  # fmt: skip
    tokens = line(december, "ai_tokens")
    assert (tokens["allocation"], tokens["used"], tokens["overage"]) == (50_000, 48_000, 0)
    assert "gc2 named 120 x 250; purchased 20,000" in tokens["description"]
    bought = line(december, "ai_tokens_purchased")
    assert (bought["quantity"], bought["allocation"], bought["used"]) == (20_000, 20_000, 0)
    assert (str(bought["unit_price"]), str(bought["amount"])) == ("1.00", "20000.00")
    assert str(december["total"]) == "20000.00"
    assert await balance(engine, f"org/retail/{DEC}/ai_token/allowance") == 0
    assert await balance(engine, f"platform/{DEC}/ai_token/purchased") == -20_000
    assert await balance(engine, f"platform/{DEC}/ai_token/expired") == 2_000  # no carryover
    assert await balance(engine, f"org/retail/{DEC}/USD/receivable") == Decimal("20000.00")

    again = await close(engine, DEC)  # closing twice changes nothing
    assert (first.issued, again.issued) == (1, 0)
    assert await document(engine, "retail", DEC) == december

    await close(engine, JAN)
    january = await document(engine, "retail", JAN)
    assert [item["meter"] for item in january["lines"]] == ["api_requests", "ai_tokens"]
    tokens = line(january, "ai_tokens")
    assert (tokens["allocation"], tokens["used"], tokens["overage"]) == (30_000, 31_000, 1_000)
    assert "purchased" not in tokens["description"]
    assert str(january["total"]) == "1000.00"
    assert await balance(engine, f"org/retail/{JAN}/ai_token/allowance") == 0

    with pytest.raises(OrganizationError, match=r"2025-12 is closed for retail \(invoice INV-"):
        await buy(engine, "retail", DEC, 1)
    assert (await verify(engine)).ok


@pytest.mark.parametrize(
    ("org", "tokens", "amount"),
    [("acme", 1_234, "1234.00"), ("initech", 7, "840"), ("globex", 3, "2.40")],
)
async def test_the_purchase_line_is_priced_in_the_organizations_currency(
    engine: AsyncEngine, org: str, tokens: int, amount: str
) -> None:
    """The rate card's token price in USD, JPY (no minor unit) and EUR; a purchase alone
    (no seats, no usage) gets the organization its invoice, and the unused tokens expire."""
    await buy(engine, org, "2025-11", tokens)
    await close(engine, "2025-11")
    doc = await document(engine, org, "2025-11")
    bought = line(doc, "ai_tokens_purchased")
    assert bought["unit_price"] == CARD.ai.price[doc["currency"]]
    assert str(bought["amount"]) == amount and str(doc["total"]) == amount
    assert line(doc, "ai_tokens")["allocation"] == tokens
    currency = doc["currency"]
    assert await balance(engine, f"org/{org}/2025-11/{currency}/receivable") == Decimal(amount)
    assert await balance(engine, f"org/{org}/2025-11/ai_token/allowance") == 0
    assert await balance(engine, "platform/2025-11/ai_token/expired") == tokens
    assert (await verify(engine)).ok


async def test_purchases_are_refused_with_a_reason(engine: AsyncEngine) -> None:
    await close(engine, "2025-10")  # nobody had activity: no invoice, but the period is closed
    refusals = [
        ("acme", "2025-10", 5, "period 2025-10 is closed for acme: tokens are bought for a "),
        ("hooli", "2026-12", 5, "no organization 'hooli': add it with `tally org add`"),
        ("acme", "2026-12", 0, "tokens are bought whole, at least 1"),
        ("acme", "2026-12", Decimal("2.5"), "tokens are bought whole"),
    ]
    for org, period, tokens, reason in refusals:
        with pytest.raises(OrganizationError, match=reason.replace("(", r"\(")):
            await buy(engine, org, period, tokens)
    assert await buy(engine, "acme", "2026-12", 1) >= 1  # no minimum; a month ahead is open


async def test_verify_names_a_purchase_changed_behind_the_close(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService
) -> None:
    purchase = await buy(engine, "acme", DEC, 20_000)
    await meter(service, month("acme", DEC, 10, 100))
    await close(engine, DEC)
    assert (await verify(engine)).ok
    async with raw_transaction(owner) as conn:  # a superuser, triggers off
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE token_purchase SET tokens = 2000 WHERE id = $1", purchase)
        await conn.execute(
            "INSERT INTO token_purchase (org, period, tokens) VALUES ('globex', $1, 9)", DEC
        )
    findings = [(f.check, f.detail) for f in (await verify(engine)).findings]
    assert findings == [
        (
            "token purchase",
            f"acme {DEC}: purchases #{purchase} (2000) total 2000 tokens; invoice INV-000001 "
            "bills 20000 purchased, its purchase entries post 20000",
        ),
        (
            "token purchase",
            f"globex {DEC}: purchases #{purchase + 1} (9) total 9 tokens; no invoice bills 0 "
            "purchased, its purchase entries post 0",
        ),
    ]


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    users=st.integers(0, 40),
    used=st.decimals(min_value=0, max_value=60_000, places=3),
    purchases=st.lists(st.integers(1, 20_000), max_size=4),
    currency=st.sampled_from(sorted(CARD.currencies)),
)
async def test_the_allowance_ends_at_zero_whatever_was_bought(
    engine: AsyncEngine,
    service: MeteringService,
    users: int,
    used: Decimal,
    purchases: list[int],
    currency: str,
) -> None:
    """Seats, usage and purchases at random: the allowance is empty after the close, the
    overage is what usage took beyond seats plus purchases, and the receivable is the total."""
    run = next(runs)
    org, period = f"buyer{run}", f"{2021 + run // 12}-{run % 12 + 1:02d}"  # a period each
    await organizations.add(bootstrap.database(engine), org, currency)
    for tokens in purchases:
        await buy(engine, org, period, tokens)
    await meter(service, month(org, period, users, used, source=f"run{run}"))
    await close(engine, period)

    doc = await document(engine, org, period)
    allowed = users * 250 + sum(purchases)
    over = max(used - allowed, Decimal(0)).quantize(Decimal(1), ROUND_CEILING)
    tokens = line(doc, "ai_tokens")
    assert (tokens["allocation"], tokens["used"], tokens["overage"]) == (allowed, used, over)
    meters = [item["meter"] for item in doc["lines"]]
    assert meters[2:] == (["ai_tokens_purchased"] if purchases else [])
    price, cents = CARD.ai.price[currency], Decimal(1).scaleb(-CARD.currencies[currency])
    overage, bought = (
        (units * price).quantize(cents, ROUND_HALF_UP) for units in (over, sum(purchases))
    )
    assert (tokens["amount"], doc["total"]) == (overage, overage + bought)
    assert await balance(engine, f"org/{org}/{period}/ai_token/allowance") == 0
    assert await balance(engine, f"org/{org}/{period}/{currency}/receivable") == doc["total"]
    if run % 8 == 0:
        assert (await verify(engine)).ok


async def test_a_purchase_waits_for_a_running_close_and_then_finds_its_period_closed(
    engine: AsyncEngine,
) -> None:
    """The check and the close cannot cross: a purchase made while a close holds its lock
    waits, and sees the period closed once the close is done (no invoice without it)."""
    async with raw_connection(engine) as close_session:
        assert not await close_store.lock(close_session)  # a close is running
        buying = asyncio.create_task(buy(engine, "acme", "2025-09", 10))
        while not await close_session.fetchval(
            """SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                WHERE d.datname = current_database() AND l.locktype = 'advisory'
                  AND NOT l.granted"""
        ):
            await asyncio.sleep(0.01)  # until the purchase waits on the close's lock
        await close_store.record_closed(close_session, "2025-09", after("2025-09"))
        await close_store.unlock(close_session)
        with pytest.raises(OrganizationError, match="period 2025-09 is closed for acme"):
            await buying
