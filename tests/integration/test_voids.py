"""Voids against real PostgreSQL: a metered event taken back in an open period (the close
bills the net) and in a closed one (the next close credits it), by ``tally events void``'s
use case and by a ``tally.void`` event; every refusal, with its reason; every surface
(ledger, invoice, rollups, usage totals, the event's story, verify) following the void."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from support.close_support import balance, close, document, license_day, line, meter
from support.ledger_support import ai, api, dead_letters_of, event, read
from tally import bootstrap
from tally.adapters.postgres import schema
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import events as event_reads
from tally.adapters.postgres.verification import verify
from tally.config import Settings
from tally.domain.voids import VoidRefused, VoidRequest
from tally.service_layer.metering import MeteringService
from tally.service_layer.voids import void_event

OCT, NOV = "2026-10", "2026-11"


def void(
    event_id: str, target: str, reason: str = "test event sent to production", **kw: Any
) -> bytes:
    data = {"source": kw.pop("target_source", "test"), "id": target, "reason": reason}
    return event("tally.void", event_id, data, time=kw.pop("time", "2026-10-20T00:00:00Z"), **kw)


def fair_use(org: str = "acme") -> list[bytes]:
    """gc2 named, 20 users (2,200,000 requests), 3,000,000 requests: USD 80.00 of overage."""
    return [
        license_day(f"{org}-lic", "gc2", "named", 20, org=org, day="2026-10-05"),
        *(api(f"{org}-{n}", count=1_000_000, org=org) for n in range(3)),
    ]


async def billable_requests(engine: AsyncEngine, org: str) -> int:
    """What the usage report and dashboard read: the API rollup, daily rows plus deltas."""
    async with raw_connection(engine) as conn:
        total: int = await conn.fetchval(
            """SELECT coalesce(sum(requests), 0) FROM (
                   SELECT org, billable, requests FROM api_usage_daily
                   UNION ALL SELECT org, billable, requests FROM api_usage_delta) r
                WHERE org = $1 AND billable""",
            org,
        )
    return total


async def used(engine: AsyncEngine, org: str, period: str, meter_: str) -> Decimal:
    """What the alerts read: the usage total."""
    async with raw_connection(engine) as conn:
        value: Decimal | None = await conn.fetchval(
            "SELECT used FROM usage_total WHERE org = $1 AND period = $2 AND meter = $3",
            org,
            period,
            meter_,
        )
    return value or Decimal(0)


async def test_a_void_in_an_open_period_is_billed_net(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await meter(service, fair_use())
    assert await billable_requests(engine, "acme") == 3_000_000
    await meter(service, [void("v-1", "acme-2", reason="replayed by mistake")])

    story = await read(engine, event_reads.event_story, "test", "acme-2")
    assert story is not None and story.status == "voided"
    assert story.void is not None
    assert (story.void.reason, story.void.requested_by) == ("replayed by mistake", "source test")
    assert story.void.asked_by is not None
    assert (story.void.asked_by.source, story.void.asked_by.id) == ("test", "v-1")
    assert story.void.reversal.kind == "usage_reversal"
    asked = await read(engine, event_reads.event_story, "test", "v-1")
    assert asked is not None and asked.status == "correction"
    assert asked.void is not None and (asked.void.source, asked.void.id) == ("test", "acme-2")

    assert await billable_requests(engine, "acme") == 2_000_000
    assert await used(engine, "acme", OCT, "api_request") == 2_000_000
    await close(engine, OCT)
    doc = await document(engine, "acme", OCT)
    api_line = line(doc, "api_requests")
    assert (api_line["used"], api_line["overage"]) == (2_000_000, 0)
    assert str(doc["total"]) == "0.00"
    assert await balance(engine, f"org/acme/{OCT}/api_request/allowance") == 0
    assert (await verify(engine)).ok


async def test_a_void_in_a_closed_period_is_credited_on_the_next_invoice(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await meter(service, fair_use())
    await close(engine, OCT)
    assert str((await document(engine, "acme", OCT))["total"]) == "80.00"

    db = bootstrap.database(engine)
    done = await void_event(db, VoidRequest(("test", "acme-1"), "duplicate upload", "cli:ops"))
    assert (done.period, done.taken_back, done.invoice) == (OCT, -1_000_000, 1)
    assert (await verify(engine)).ok  # late (negative) usage waits for the next close

    await close(engine, NOV)
    nov = await document(engine, "acme", NOV)
    [adjustment] = nov["adjustments"]
    assert (adjustment["period"], str(adjustment["amount"])) == (OCT, "-80.00")
    assert adjustment["description"] == (
        "voided usage for 2026-10: 1,000,000 requests taken back, 800,000 over credited, "
        "200,000 expired again"
    )
    async with raw_connection(engine) as conn:
        stored = await conn.fetchrow("SELECT used, unexpired, overage FROM invoice_adjustment")
    assert tuple(stored) == (-1_000_000, -200_000, -800_000)
    assert str(nov["total"]) == "-80.00"
    assert str((await document(engine, "acme", OCT))["total"]) == "80.00"  # never rewritten
    assert await balance(engine, f"org/acme/{OCT}/api_request/allowance") == 0
    receivable = await balance(engine, f"org/acme/{NOV}/USD/receivable")
    assert receivable == Decimal("-80.00")
    assert (await verify(engine)).ok
    story = await read(engine, event_reads.event_story, "test", "acme-1")
    assert story is not None and story.void is not None
    assert "adjustment" in story.void.billing.detail


async def test_voids_the_ledger_refuses_are_answered_with_a_reason(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await meter(
        service,
        [
            *fair_use(),
            api("ui-1", kind="ui"),  # not billable
            void("v-1", "acme-0"),
        ],
    )
    db = bootstrap.database(engine)
    cases = [
        (("test", "acme-0"), "already_voided", "already voided"),
        (("test", "nobody"), "void_unknown_event", "never metered"),
        (("test", "ui-1"), "void_not_metered", "non-billable"),
        (("test", "acme-lic"), "void_not_metered", "license report"),
        (("test", "v-1"), "void_not_metered", "tally.void"),
    ]
    for target, code, words in cases:
        with pytest.raises(VoidRefused, match=words) as refused:
            await void_event(db, VoidRequest(target, "why", "cli:ops"))
        assert refused.value.code == code

    await meter(
        service,
        [
            void("v-1", "acme-0"),  # the same void again: a duplicate, counted once
            void("v-2", "acme-0"),  # a second void of the same event
            void("v-3", "nobody"),
            void("v-4", "acme-1", org="globex"),  # another organization's subject
            void("v-5", "acme-1", target_source="crm"),  # another source's event
            void("v-6", "v-6"),  # itself
        ],
    )
    letters = {letter.event_id: letter for letter in await dead_letters_of(engine)}
    assert {key: letters[key].code for key in letters} == {
        "v-2": "already_voided",
        "v-3": "void_unknown_event",
        "v-4": "void_other_organization",
        "v-5": "void_other_source",
        "v-6": "void_of_itself",
    }
    assert "already voided" in letters["v-2"].reason
    assert await billable_requests(engine, "acme") == 2_000_000
    assert (await verify(engine)).ok


async def test_an_event_and_its_void_in_one_batch_and_a_void_replayed_after_its_event(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await meter(service, [api("a-1", count=7), void("v-1", "a-1")])
    await meter(service, [void("v-2", "a-2")])  # before its event: a dead letter
    await meter(service, [api("a-2", count=5)])
    [letter] = await dead_letters_of(engine)
    assert letter.code == "void_unknown_event"
    from tally.service_layer.metering import replay_dead_letters

    outcomes = await replay_dead_letters(service, None, 100)
    assert list(outcomes.values()) == ["correction"]
    assert await billable_requests(engine, "acme") == 0
    assert await used(engine, "acme", OCT, "api_request") == 0
    assert (await verify(engine)).ok


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.tuples(st.integers(1, 900), st.booleans(), st.integers(0, 2)), min_size=1, max_size=12
    )
)
async def test_ai_tokens_stay_the_conversion_of_what_is_not_voided(
    engine: AsyncEngine, service: MeteringService, plan: list[tuple[int, bool, int]]
) -> None:
    """Voice-bot minutes (1 token per 17: every total rounds) in batches, some voided in a
    later batch or the same one: the ledger's tokens are always the conversion of the
    minutes not voided, whatever the order. (The database outlives each example: the
    totals are the examples' so far.)"""
    async with raw_connection(engine) as conn:
        run = await conn.fetchval("SELECT count(*) FROM usage_event")
        before = await conn.fetchval(
            """SELECT coalesce(sum(quantity), 0) FROM usage_event v
                WHERE feature = 'voice_bot'
                  AND NOT EXISTS (SELECT 1 FROM event_void x
                                   WHERE (x.source, x.id) = (v.source, v.id))"""
        )
    batches: list[list[bytes]] = [[], [], []]
    for n, (minutes, voided, batch) in enumerate(plan):
        batches[batch].append(ai(f"m-{run}-{n}", "voice_bot", minutes, "minute", org="globex"))
        if voided:
            later = min(batch + 1, 2) if n % 2 else batch
            batches[later].append(void(f"v-{run}-{n}", f"m-{run}-{n}", org="globex"))
    for payloads in batches:
        if payloads:
            await meter(service, payloads)
    kept = before + sum(m for m, voided, _ in plan if not voided)
    async with raw_connection(engine) as conn:
        tokens = await conn.fetchval(
            """SELECT coalesce(sum(l.amount), 0) FROM entry_line l
                 JOIN account a ON a.id = l.account_id
                WHERE a.code = 'org/globex/2026-10/ai_token/usage/voice_bot'"""
        )
    card = (await service.book()).cards[0]
    assert tokens == card.tokens("voice_bot", Decimal(kept))
    assert (await verify(engine)).ok


async def test_a_void_prices_by_the_rate_card_that_metered_its_event(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService, settings: Settings
) -> None:
    """A rate card loaded after the event, effective before it, never reprices its void: the
    reversal takes back what was posted, under the same card, from the CLI and the stream."""
    await meter(
        service,
        [ai("m1", "voice_bot", 170, "minute", org="globex"), api("a1", count=5, org="globex")],
    )
    card = (await service.book()).cards[0]
    later = card.model_copy(
        update={"version": "2026-10", "effective_from": datetime(2026, 10, 1, tzinfo=UTC)}
    )
    await schema.load_rate_cards(owner, [later])
    done = await void_event(bootstrap.database(engine), VoidRequest(("test", "a1"), "x", "cli:ops"))
    assert done.taken_back == -5
    restarted = bootstrap.metering_service(engine, settings)  # a consumer started since
    await meter(restarted, [void("v-1", "m1", org="globex")])
    assert await dead_letters_of(engine) == []
    async with raw_connection(engine) as conn:
        versions = await conn.fetch(
            "SELECT DISTINCT rate_card_version FROM journal_entry WHERE kind = 'usage_reversal'"
        )
    assert [row["rate_card_version"] for row in versions] == [card.version]
    assert (await verify(engine)).ok
