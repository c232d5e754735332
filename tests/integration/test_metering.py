"""Events XADDed as any integration would, metered once, bad ones dead-lettered with a reason."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from support.ledger_support import ai, api, balance_map, dead_letters_of, drain, event, read
from tally import bootstrap
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import events as event_reads
from tally.adapters.postgres.reads import org_balances
from tally.adapters.postgres.verification import verify
from tally.config import Settings
from tally.service_layer import organizations
from tally.service_layer.metering import MeteringService, replay_dead_letters

APR = "org/acme/2026-10/api_request"
TOK = "org/acme/2026-10/ai_token"


async def xadd(client: aioredis.Redis, key: str, *values: bytes | dict[bytes, bytes]) -> None:
    for value in values:
        await client.xadd(key, value if isinstance(value, dict) else {b"event": value})


async def test_usage_is_metered_into_balanced_entries(
    engine: AsyncEngine, stream: aioredis.Redis, settings: Settings
) -> None:
    await xadd(
        stream,
        settings.stream,
        api("r1", count=3),
        api("r2"),
        api("r3", kind="ui"),  # not billable: kept for audit, not posted
        ai("a1", "voice_bot", "5000", "minute"),
        ai("a2", "agent_copilot", 12.5, "token"),
        ai("a3", "predictive_routing", 40, "interaction"),
        event("license.usage", "l1", {"license": "gc2", "model": "named", "users": 20}),
    )
    consumer = await drain(settings)
    assert consumer.totals["metered"] == 5
    assert consumer.totals["non_billable"] == 1
    assert consumer.totals["recorded"] == 1
    balances = balance_map(await read(engine, org_balances.balances, "acme", "2026-10"))
    assert balances[f"{APR}/usage"] == 4
    assert balances[f"{APR}/allowance"] == -4
    assert balances[f"{TOK}/usage/voice_bot"] == Decimal("294.117648")  # 5000 / 17, rounded up
    assert balances[f"{TOK}/usage/agent_copilot"] == Decimal("12.5")
    assert balances[f"{TOK}/usage/predictive_routing"] == 0
    assert balances[f"{TOK}/allowance"] == Decimal("-306.617648")
    assert (await verify(engine)).ok


async def test_each_duplicate_counts_once_and_a_conflict_is_kept_not_metered(
    engine: AsyncEngine, stream: aioredis.Redis, settings: Settings
) -> None:
    same = api("r1", count=2)
    reordered = json.dumps(json.loads(same), indent=1, sort_keys=True).encode()
    await xadd(stream, settings.stream, same, same, reordered, api("r1", count=7))
    await drain(settings)
    await xadd(stream, settings.stream, same)  # much later, another retry
    consumer = await drain(settings)
    assert consumer.totals["duplicate"] == 1
    balances = balance_map(await read(engine, org_balances.balances, "acme", "2026-10"))
    assert balances[f"{APR}/usage"] == 2
    story = await read(engine, event_reads.event_story, "test", "r1")
    assert story is not None
    assert story.status == "metered"
    assert sorted(d.status for d in story.deliveries) == [
        "conflict",
        "duplicate",
        "duplicate",
        "duplicate",
    ]
    assert story.entry.lines
    assert (await verify(engine)).ok


BAD = {
    "malformed JSON": b'{"specversion": "1.0", "id": ',
    "schema violation: data.count": api("b1", count=0),
    "schema violation: data.method": api("b2").replace(b'"GET"', b'"FETCH"'),
    "schema violation: subject: Field required": json.dumps(
        {k: v for k, v in json.loads(api("b3")).items() if k != "subject"}
    ).encode(),
    "unknown type 'api.response'": api("b4").replace(b"api.request", b"api.response"),
    "unknown organization 'hooli'": api("b5", org="hooli"),
    "unknown feature 'mind_reader'": ai("b6", "mind_reader", 1, "thought"),
    "wrong unit 'second' for feature 'voice_bot'": ai("b7", "voice_bot", 1, "second"),
    "data.quantity: Input should be greater than or equal to 0": ai(
        "b8", "voice_bot", -1, "minute"
    ),
    "data.quantity: Value error, a quantity string is plain decimal digits": ai(
        "b9", "voice_bot", "NaN", "minute"
    ),
    "malformed JSON: non-finite number Infinity": ai("b10", "voice_bot", 1, "minute").replace(
        b"1,", b"Infinity,"
    ),
    "in the future": api("b11", time="2999-01-01T00:00:00Z"),
    "time: Input should have timezone info": api("b12", time="2026-10-15T12:00:00"),
    "unknown client_kind 'toaster'": api("b13", kind="toaster"),
    "oversized entry": ai("b14", "voice_bot", 1, "minute").replace(
        b'"minute"', b'"minute", "user_id": "' + b"x" * 70_000 + b'"'
    ),
    "stream entry without the 'event' field (fields: payload)": {b"payload": api("b15")},
    "malformed JSON: not UTF-8": b"\xff\xfe{}",
    "license 'communicate' has no 'concurrent' model": event(
        "license.usage", "b16", {"license": "communicate", "model": "concurrent", "users": 3}
    ),
}


async def test_every_bad_input_is_dead_lettered_with_its_reason_and_the_stream_moves_on(
    engine: AsyncEngine, stream: aioredis.Redis, settings: Settings
) -> None:
    await xadd(stream, settings.stream, *BAD.values(), api("good", count=5))
    consumer = await drain(settings)
    assert consumer.totals["rejected"] == len(BAD)
    assert consumer.totals["metered"] == 1
    letters = await dead_letters_of(engine)
    assert len(letters) == len(BAD)
    for expected, letter in zip(BAD, letters, strict=True):
        assert expected in letter.reason, (expected, letter.reason)
        assert letter.stream_id and letter.received_at
    async with raw_connection(engine) as conn:
        kept = await conn.fetchval("SELECT raw FROM dead_letter WHERE reason LIKE 'malformed%'")
    assert bytes(kept) == BAD["malformed JSON"]
    backlog = await stream.xpending(settings.stream, settings.group)
    assert backlog["pending"] == 0  # rejects are acked: nothing stalls
    assert (await verify(engine)).ok


async def test_a_redelivered_reject_is_kept_once(
    engine: AsyncEngine, service: MeteringService
) -> None:
    entries = [("5-0", {b"event": b"not json"})]
    await service.process("s", entries)
    await service.process("s", entries)
    assert len(await dead_letters_of(engine)) == 1


async def test_replay_after_the_fix_meters_once_and_is_idempotent(
    engine: AsyncEngine, stream: aioredis.Redis, settings: Settings, service: MeteringService
) -> None:
    await xadd(stream, settings.stream, api("h1", count=4, org="hooli"), b"{oops")
    await drain(settings)
    first = await replay_dead_letters(service, None, 100)
    assert all(outcome.startswith("rejected") for outcome in first.values())
    await organizations.add(bootstrap.database(engine), "hooli", "GBP")
    again = await replay_dead_letters(
        bootstrap.metering_service(engine, settings, require_known_sources=False), None, 100
    )
    assert sorted(again.values())[0] == "metered"
    assert sorted(again.values())[1].startswith("rejected: malformed JSON")
    assert await replay_dead_letters(service, None, 100) == {
        key: value for key, value in again.items() if value.startswith("rejected")
    }
    balances = balance_map(await read(engine, org_balances.balances, "hooli", "2026-10"))
    assert balances["org/hooli/2026-10/api_request/usage"] == 4
    letters = await dead_letters_of(engine, include_replayed=True)
    assert [letter.state for letter in letters] == ["replayed", "open"]
    assert (await verify(engine)).ok


@pytest.mark.parametrize(
    ("tamper", "finding"),
    [
        ("UPDATE entry_line SET amount = amount * 2 WHERE amount > 0", "unbalanced"),
        (
            "UPDATE entry_line SET amount = amount * 2 WHERE entry_id = 1;"
            "UPDATE usage_event SET quantity = quantity * 2",
            "hash mismatch",
        ),
        ("DELETE FROM usage_event WHERE id = 'r2'", "hash mismatch"),
        ("UPDATE usage_event SET quantity = 9 WHERE id = 'r2'", "usage mismatch"),
        ("DELETE FROM entry_line WHERE id = (SELECT max(id) FROM entry_line)", "unbalanced"),
        (
            "DELETE FROM usage_event WHERE entry_id = 1; DELETE FROM entry_line WHERE entry_id = 1;"
            "DELETE FROM journal_entry WHERE id = 1",
            "lane head|chain gap",  # which one depends on the lane entry 2 went to
        ),
        (
            "INSERT INTO journal_entry (idempotency_key, kind, org, period, posted_at, lane, seq,"
            " prev_hash, hash) SELECT 'forged', 'usage', org, period, posted_at, lane,"
            " (SELECT max(seq) + 1 FROM journal_entry j WHERE j.lane = e.lane), hash, hash"
            " FROM journal_entry e WHERE id = 1",
            "too few lines",
        ),
        ("UPDATE journal_entry SET org = 'globex' WHERE id = 1", "hash mismatch"),
        ("UPDATE account SET owner = 'initech'", "account"),
        (
            "UPDATE usage_event SET raw = convert_to(replace(convert_from(raw, 'UTF8'),"
            " '\"count\": 3', '\"count\": 30'), 'UTF8') WHERE id = 'r1'",
            "hash mismatch|event bytes",
        ),
        ("UPDATE usage_event SET event_time = event_time - interval '1 hour'", "event bytes"),
        ("UPDATE license_usage SET users = 2000", "event bytes"),
        ("DELETE FROM license_usage", "event bytes"),
    ],
)
async def test_verify_names_rows_changed_behind_the_applications_back(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService, tamper: str, finding: str
) -> None:
    await service.process("s", [("1-0", {b"event": api("r1", count=3)})])
    await service.process("s", [("2-0", {b"event": api("r2", count=2)})])
    licensed = event("license.usage", "l1", {"license": "gc2", "model": "named", "users": 20})
    await service.process("s", [("3-0", {b"event": licensed})])
    assert (await verify(engine)).ok
    async with raw_connection(owner) as conn:  # a superuser, triggers off
        await conn.execute("SET session_replication_role = replica")
        for statement in tamper.split(";"):
            await conn.execute(statement)
        await conn.execute("SET session_replication_role = origin")
    result = await verify(engine)
    assert not result.ok
    assert set(finding.split("|")) & {f.check for f in result.findings}, result.findings


POISON = {
    "NUL in source": api("p1", source="crm\u0000x"),
    "lone surrogate id": api("x").replace(b'"id": "x"', b'"id": "\\ud800"'),
    "users beyond any licence": event(
        "license.usage", "p3", {"license": "gc2", "model": "named", "users": 3_000_000_000}
    ),
    "17,000 decimal places": ai("p4", "voice_bot", "0." + "0" * 17_000 + "1", "minute"),
    "exponent far below zero": ai("p5", "voice_bot", 1, "minute").replace(
        b'"quantity": 1', b'"quantity": 1E-17001'
    ),
    "time that overflows in UTC": api("p6", time="0001-01-01T00:00:00+14:00"),
    "NUL in an unknown org's source": api("p7", source="crm\u0000x", org="nobody"),
}


async def test_entries_postgres_could_not_store_are_dead_letters_not_a_stalled_batch(
    engine: AsyncEngine, service: MeteringService
) -> None:
    entries = [(f"{n}-0", {b"event": raw}) for n, raw in enumerate(POISON.values(), 1)]
    entries.append(("99-0", {b"event": api("fine", count=6)}))
    report = await service.process("s", entries)
    assert report.counts["metered"] == 1
    assert report.counts["rejected"] == len(POISON)
    letters = await dead_letters_of(engine)
    assert {letter.code for letter in letters} == {"schema_violation"}
    assert all(letter.source in (None, "test") for letter in letters)
    assert (await verify(engine)).ok


async def test_an_entry_the_database_refuses_is_isolated_and_the_rest_is_metered(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService
) -> None:
    """Whatever PostgreSQL refuses in a batch (here a constraint the rules do not know of),
    the batch is split until that one entry is left; it becomes an ``unstorable`` dead
    letter and every other entry is metered."""
    async with raw_connection(owner) as conn:  # only the owner alters a table
        await conn.execute("ALTER TABLE usage_event ADD CONSTRAINT no_evil CHECK (id <> 'evil')")
    entries = [(f"{n}-0", {b"event": api(f"ok{n}", count=n)}) for n in range(1, 8)]
    entries.insert(4, ("50-0", {b"event": api("evil", count=100)}))
    report = await service.process("s", entries)
    assert report.counts["metered"] == 7
    letters = await dead_letters_of(engine)
    assert [(letter.code, letter.stream_id) for letter in letters] == [("unstorable", "50-0")]
    assert "no_evil" in letters[0].reason
    balances = balance_map(await read(engine, org_balances.balances, "acme", "2026-10"))
    assert balances[f"{APR}/usage"] == sum(range(1, 8))
    assert (await verify(engine)).ok


async def test_an_entry_deleted_while_pending_does_not_hold_the_group(
    engine: AsyncEngine, stream: aioredis.Redis, settings: Settings
) -> None:
    await xadd(stream, settings.stream, api("d1"), api("d2", count=2))
    taken = await stream.xreadgroup(settings.group, "gone", {settings.stream: ">"}, count=1)
    await stream.xdel(settings.stream, taken[0][1][0][0])  # read by a dead consumer, then deleted
    await drain(settings, claim_idle_ms=100)
    assert (await stream.xpending(settings.stream, settings.group))["pending"] == 0
    balances = balance_map(await read(engine, org_balances.balances, "acme", "2026-10"))
    assert balances[f"{APR}/usage"] == 2
