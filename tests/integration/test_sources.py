"""Only known producers bill: with ``TALLY_REQUIRE_KNOWN_SOURCES``, an event from a source
that is not registered, or for an organization outside its list, is a dead letter that
says how to fix it, and meters once the fix is made."""

from __future__ import annotations

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from support.ledger_support import api, balance_map, dead_letters_of, drain, event, read
from tally import bootstrap
from tally.adapters.postgres import sources
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import org_balances
from tally.adapters.postgres.verification import verify
from tally.config import Settings
from tally.service_layer.metering import MeteringService, replay_dead_letters

APR = "org/{org}/2026-10/api_request/usage"
LICENSE = {"license": "gc2", "model": "named", "users": 20}


def checking(engine: AsyncEngine, settings: Settings) -> MeteringService:
    return bootstrap.metering_service(engine, settings, require_known_sources=True)


async def letters(engine: AsyncEngine) -> dict[str, tuple[str, str]]:
    """Open dead letters: stream id -> (code, reason)."""
    return {
        letter.stream_id: (letter.code, letter.reason) for letter in await dead_letters_of(engine)
    }


async def usage(engine: AsyncEngine, org: str) -> object:
    balances = balance_map(await read(engine, org_balances.balances, org, "2026-10"))
    return balances.get(APR.format(org=org), 0)


async def test_unknown_sources_and_foreign_organizations_are_dead_letters_until_fixed(
    engine: AsyncEngine, settings: Settings
) -> None:
    await sources.add(engine, "crm-sync", ["acme"])
    metering = checking(engine, settings)
    report = await metering.process(
        "s",
        [
            ("1-0", {b"event": api("ok", count=3, source="crm-sync")}),
            ("2-0", {b"event": api("other-org", count=5, source="crm-sync", org="globex")}),
            ("3-0", {b"event": api("forged", count=7, source="forged")}),
            # license reports set allocations: the same rule applies
            ("4-0", {b"event": event("license.usage", "lic", LICENSE, source="forged")}),
        ],
    )
    assert report.outcomes["1-0"] == "metered"
    assert await usage(engine, "acme") == 3
    assert await usage(engine, "globex") == 0
    found = await letters(engine)
    assert found["2-0"] == (
        "organization_not_allowed",
        "source 'crm-sync' may not bill organization 'globex' (it may bill acme): allow it "
        "with `tally source add crm-sync --orgs acme,globex`, then `tally dlq replay --all`",
    )
    assert found["3-0"] == (
        "unknown_source",
        "unknown source 'forged': register it with `tally source add forged --orgs acme` "
        "(or --any-org), then `tally dlq replay --all`",
    )
    assert found["4-0"][0] == "unknown_source"
    async with raw_connection(engine) as conn:
        assert await conn.fetchval("SELECT count(*) FROM license_usage") == 0

    await sources.add(engine, "crm-sync", ["acme", "globex"])
    await sources.add(engine, "forged", None)  # the fix: now a known, trusted producer
    outcomes = await replay_dead_letters(metering, None, 100)
    assert sorted(outcomes.values()) == ["metered", "metered", "recorded"]
    assert await usage(engine, "acme") == 3 + 7
    assert await usage(engine, "globex") == 5
    assert await letters(engine) == {}
    assert await replay_dead_letters(metering, None, 100) == {}
    assert (await verify(engine)).ok


async def test_a_running_service_applies_a_changed_registry_at_its_next_batch(
    engine: AsyncEngine, settings: Settings
) -> None:
    metering = checking(engine, settings)
    first = await metering.process("s", [("1-0", {b"event": api("a", source="new-app")})])
    assert first.outcomes["1-0"].startswith("rejected: unknown source 'new-app'")
    await sources.add(engine, "new-app", None)
    second = await metering.process("s", [("2-0", {b"event": api("b", source="new-app")})])
    assert second.outcomes["2-0"] == "metered"
    await sources.remove(engine, "new-app")
    third = await metering.process("s", [("3-0", {b"event": api("c", source="new-app")})])
    assert third.outcomes["3-0"].startswith("rejected: unknown source 'new-app'")
    assert await usage(engine, "acme") == 1


async def test_events_metered_while_the_check_was_off_stay_verified_once_it_is_on(
    engine: AsyncEngine, settings: Settings
) -> None:
    unchecked = bootstrap.metering_service(engine, settings, require_known_sources=False)
    before = await unchecked.process("s", [("1-0", {b"event": api("old", source="anyone")})])
    assert before.outcomes["1-0"] == "metered"
    await sources.add(engine, "crm-sync", ["globex"])
    metering = checking(engine, settings)
    after = await metering.process("s", [("2-0", {b"event": api("new", source="crm-sync")})])
    assert after.outcomes["2-0"].startswith("rejected: source 'crm-sync' may not bill")
    # verify re-rates what was stored, not who may send it today
    assert (await verify(engine)).ok


async def test_the_consumer_checks_sources_when_the_setting_is_on(
    engine: AsyncEngine,
    stream: aioredis.Redis,
    settings: Settings,
) -> None:
    await stream.xadd(settings.stream, {b"event": api("x", count=2, source="stranger")})
    consumer = await drain(settings, require_known_sources=True)
    assert consumer.totals["rejected"] == 1
    assert [code for code, _ in (await letters(engine)).values()] == ["unknown_source"]
    await stream.xadd(settings.stream, {b"event": api("y", count=4, source="stranger")})
    consumer = await drain(settings)  # the default: off, as for the embedded demo
    assert consumer.totals["metered"] == 1
    assert await usage(engine, "acme") == 4
