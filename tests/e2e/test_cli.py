"""The ``tally`` CLI for real: subprocesses on this test's database and stream.

The environment names the test's PostgreSQL and Redis (``TALLY_DATABASE_URL``,
``TALLY_REDIS_URL``, ``TALLY_STREAM``), so no embedded server starts. Each CLI start costs
about a second or more, so independent commands run side by side (``tally_all``), and one
test walks the whole story a new user would: migrate, organizations, events XADDed with
plain ``redis-cli``, consume, look, replay, verify.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from support.cli import Run, env_for, tally, tally_all, xadd_like_an_integration
from support.ledger_support import ai, api, dead_letters_of, event, read, urls_of
from tally import bootstrap
from tally.adapters.postgres.reads import org_balances
from tally.adapters.postgres.schema import alembic_config
from tally.adapters.ratecard_files import bundled_cards
from tally.config import Settings
from tally_tools.bench import bench_orgs
from tally_tools.bench_pipeline import key_of
from tally_tools.loadgen import LoadMix

PERIOD = "2026-10"
APR = f"org/acme/{PERIOD}/api_request"
TOK = f"org/acme/{PERIOD}/ai_token"


def dsn(settings: Settings) -> str:
    return (
        make_url(urls_of(settings).database)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


async def fetch(settings: Settings, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn(settings))
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


async def stream_length(settings: Settings) -> int:
    client = aioredis.from_url(urls_of(settings).redis)
    try:
        return int(await client.xlen(settings.stream))
    finally:
        await client.aclose()


async def groups(settings: Settings) -> list[dict[str, Any]]:
    client = aioredis.from_url(urls_of(settings).redis, decode_responses=True)
    try:
        return list(await client.xinfo_groups(settings.stream))
    finally:
        await client.aclose()


def balances_of(run: Run) -> dict[str, Decimal]:
    rows = run.json()
    assert isinstance(rows, list) and rows, run
    for row in rows:
        assert set(row) == {"account", "unit", "balance"}, row
        assert isinstance(row["balance"], str), row  # decimals as strings, never floats
    return {row["account"]: Decimal(row["balance"]) for row in rows}


# ---------------------------------------------------------------------------- migrate


async def test_migrate_concurrently_then_again_leaves_one_schema_and_a_group_from_0(
    settings: Settings,
) -> None:
    # an integration that published before anyone migrated: a group at `$` would skip it
    early = await xadd_like_an_integration(settings, api("early"))

    both = await tally_all(settings, ["migrate"], ["migrate"])
    for run in both:
        assert run.code == 0, run
        assert "schema at the newest revision" in run.said
    assert sorted("created from id 0" in run.said for run in both) == [False, True], both
    assert sorted("rate cards loaded" in run.said for run in both) == [False, True], both

    again = await tally(settings, "migrate")
    assert again.code == 0, again
    assert "rate cards up to date" in again.said
    assert f"consumer group 'metering' on '{settings.stream}' already there" in again.said

    head = ScriptDirectory.from_config(alembic_config(urls_of(settings).database))
    versions = await fetch(settings, "SELECT version_num FROM alembic_version")
    assert [row["version_num"] for row in versions] == [head.get_current_head()]
    cards = await fetch(settings, "SELECT version FROM rate_card ORDER BY version")
    assert [row["version"] for row in cards] == sorted(card.version for card in bundled_cards())
    homes = await fetch(
        settings,
        """SELECT DISTINCT schemaname FROM pg_tables
            WHERE schemaname NOT IN ('pg_catalog', 'information_schema')""",
    )
    assert [row["schemaname"] for row in homes] == ["public"]

    (group,) = await groups(settings)
    assert group["name"] == "metering"
    assert group["last-delivered-id"] == "0-0", group  # created from 0, not `$`
    assert (group["consumers"], group["pending"]) == (0, 0)
    if "lag" in group:  # Redis ≥ 7: the early event is still to be read
        assert group["lag"] == 1, group
    assert await stream_length(settings) == 1 and early


async def test_a_command_on_an_unmigrated_database_says_to_run_migrate(
    settings: Settings,
) -> None:
    runs = await tally_all(
        settings,
        ["org", "list"],
        ["ledger", "balances", "--org", "acme", "--format", "json"],
    )
    for run in runs:
        assert run.code == 1, run
        assert run.stdout == "", run
        assert "Traceback" not in run.stderr, run
        assert run.stderr.count("error:") == 1, run
        assert run.said.startswith("error: the database is not set up"), run
        assert run.said.endswith("run `tally migrate`"), run


# ---------------------------------------------------------------------------- the story


def bad_count(event_id: str) -> bytes:
    return api(event_id, count=0)


async def test_the_whole_story_through_the_cli(settings: Settings) -> None:
    crm = {"source": "crm-sync"}
    emitted = api("e1", count=5, source="tally-emit")
    before = await stream_length(settings)

    # 1. migrate, and what needs no database: publishing, refusing bad arguments
    (
        migrate,
        emit_ok,
        emit_bad,
        emit_forced,
        bad_period,
        replay_nothing,
    ) = await tally_all(
        settings,
        ["migrate"],
        ["emit", emitted.decode()],
        ["emit", bad_count("e2").decode()],
        ["emit", "--force", bad_count("e3").decode()],
        ["ledger", "balances", "--period", "2026-13", "--org", "acme"],
        ["dlq", "replay"],
    )
    assert migrate.code == 0, migrate
    assert emit_ok.code == 0, emit_ok
    assert emit_bad.code == 2, emit_bad
    assert "invalid event: schema violation: data.count" in emit_bad.said, emit_bad
    assert emit_forced.code == 0, emit_forced
    assert "publishing an invalid event" in emit_forced.said
    assert bad_period.code == 2, bad_period
    assert "'2026-13' is not a period YYYY-MM" in bad_period.said, bad_period
    assert "Traceback" not in bad_period.stderr
    assert replay_nothing.code == 2, replay_nothing
    assert "give one dead letter ID, or --all" in replay_nothing.said
    assert await stream_length(settings) == before + 2  # the refused one was not published
    client = aioredis.from_url(urls_of(settings).redis)
    try:
        ((_, fields),) = await client.xrange(settings.stream, emit_ok.stdout.strip(), "+", 1)
    finally:
        await client.aclose()
    assert fields == {b"event": emitted}  # the emitted bytes, as given

    # 2. events as a non-Python integration XADDs them: a duplicate, a conflict, bad ones
    ids = {
        "r1": await xadd_like_an_integration(settings, api("r1", count=3, **crm)),
        "r1 again": await xadd_like_an_integration(settings, api("r1", count=3, **crm)),
        "r1 conflict": await xadd_like_an_integration(settings, api("r1", count=7, **crm)),
        "a1": await xadd_like_an_integration(
            settings, ai("a1", "voice_bot", "170", "minute", **crm)
        ),
        "a2": await xadd_like_an_integration(settings, ai("a2", "agent_copilot", 0.1, "token")),
        "l1": await xadd_like_an_integration(
            settings,
            event("license.usage", "l1", {"license": "gc2", "model": "named", "users": 20}),
        ),
        "hooli": await xadd_like_an_integration(settings, api("h1", count=2, org="hooli")),
        "malformed": await xadd_like_an_integration(settings, b'{"specversion": "1.0", "id": '),
    }

    # 3. organizations
    added, unpriced = await tally_all(
        settings,
        ["org", "add", "acme", "--currency", "usd"],
        ["org", "add", "initech", "--currency", "XYZ"],
    )
    assert added.code == 0 and "added acme (USD)" in added.said, added
    assert unpriced.code == 2, unpriced
    assert "currency 'XYZ' is not priced by the rate card" in unpriced.said
    assert "AUD, BRL, CAD, EUR, GBP, JPY, NZD, USD, ZAR" in unpriced.said, unpriced

    # 4. consume, while looking at the organizations
    consumed, listed, changed = await tally_all(
        settings,
        ["consume", "--until-idle"],
        ["org", "list", "--format", "json"],
        ["org", "add", "acme", "--currency", "EUR"],
    )
    assert consumed.code == 0, consumed
    orgs = listed.json()
    assert [(o["org"], o["currency"]) for o in orgs] == [("acme", "USD")], orgs
    assert changed.code == 2, changed
    assert "'acme' exists with currency USD" in changed.said, changed
    assert (await groups(settings))[0]["pending"] == 0

    # 5. look at what became of it all
    balances, story, unknown, letters, verified, hooli = await tally_all(
        settings,
        ["ledger", "balances", "--org", "acme", "--period", PERIOD, "--format", "json"],
        ["events", "show", "crm-sync", "r1", "--format", "json"],
        ["events", "show", "crm-sync", "no-such-id"],
        ["dlq", "list", "--format", "json"],
        ["ledger", "verify"],
        ["org", "add", "hooli", "--currency", "gbp"],
    )
    amounts = balances_of(balances)
    assert amounts[f"{APR}/usage"] == 3 + 5  # r1 once (not the duplicate, not the conflict)
    assert amounts[f"{APR}/allowance"] == -8
    assert amounts[f"{TOK}/usage/voice_bot"] == 10  # 170 minutes / 17
    assert amounts[f"{TOK}/usage/agent_copilot"] == Decimal("0.1")
    assert sum(amounts.values()) == 0  # double entry, per unit here: all of acme's lines

    shown = story.json()
    assert shown["status"] == "metered", shown
    entry = shown["entry"]
    assert entry and entry["lines"] and entry["id"] == shown["event"]["entry_id"], shown
    assert sum(Decimal(line["amount"]) for line in entry["lines"]) == 0
    assert shown["event"]["stream_id"] == ids["r1"]
    deliveries = sorted((d["status"], d["stream_id"]) for d in shown["deliveries"])
    assert deliveries == [("conflict", ids["r1 conflict"]), ("duplicate", ids["r1 again"])]

    assert unknown.code != 0, unknown
    assert "no event (crm-sync, no-such-id) was ever received" in unknown.said, unknown
    assert "Traceback" not in unknown.stderr

    dead = letters.json()["items"]
    for letter in dead:
        assert {"id", "reason", "stream_id", "received_at"} <= set(letter), letter
        datetime.fromisoformat(letter["received_at"])
    reasons = {letter["stream_id"]: letter["reason"] for letter in dead}
    assert len(dead) == 3, dead
    assert "unknown organization 'hooli'" in reasons[ids["hooli"]]
    assert reasons[ids["malformed"]].startswith("malformed JSON")
    (forced,) = [r for sid, r in reasons.items() if sid not in (ids["hooli"], ids["malformed"])]
    assert "data.count" in forced

    assert verified.code == 0, verified
    assert "no findings" in verified.said, verified
    assert hooli.code == 0, hooli

    # 6. replay the unknown organization's event now that it exists, once
    (letter_id,) = [letter["id"] for letter in dead if letter["stream_id"] == ids["hooli"]]
    replayed = await tally(settings, "dlq", "replay", str(letter_id), "--format", "json")
    assert replayed.json() == [{"id": letter_id, "outcome": "metered"}], replayed

    again, verified_json = await tally_all(
        settings,
        ["dlq", "replay", str(letter_id)],
        ["ledger", "verify", "--format", "json"],
    )
    assert again.code != 0, again
    assert f"dead letter {letter_id} does not exist or was already replayed" in again.said
    report = verified_json.json()
    assert report["ok"] is True and report["findings"] == [], report
    assert report["events"] >= 5
    engine = bootstrap.engine(urls_of(settings).database)
    try:
        hooli_rows = await read(engine, org_balances.balances, "hooli", PERIOD)
        still_open = await dead_letters_of(engine)
    finally:
        await engine.dispose()
    assert {r.account: r.balance for r in hooli_rows}[f"org/hooli/{PERIOD}/api_request/usage"] == 2
    assert sorted(letter.stream_id for letter in still_open) == sorted(
        sid for sid in reasons if sid != ids["hooli"]
    )


async def test_the_demo_runs_end_to_end_and_a_rerun_changes_nothing(settings: Settings) -> None:
    first = (await tally(settings, "demo", "--events", "3000", "--format", "json")).json()
    assert first["verified"] is True and first["findings"] == []
    assert first["consumed"]["metered"] > 0
    assert sum(first["dead_letters"].values()) == first["published"]["bad_total"]
    sent = first["published"]["billable_requests"] | {"acme": 3_000_000}  # the fair-use policy
    for org, rows in first["balances"].items():
        used = {row["account"]: row["balance"] for row in rows}
        assert used.get(f"org/{org}/{first['period']}/api_request/usage", "0") == str(sent[org])
    acme = first["invoices"]["acme"]  # the fair-use policy's worked example
    assert (acme["currency"], acme["total"]) == ("USD", "80.00")
    assert acme["lines"][0]["overage"] == "800000"
    assert {invoice["currency"] for invoice in first["invoices"].values()} == {
        "USD", "EUR", "JPY", "GBP",
    }  # fmt: skip
    reproduced = await tally(settings, "invoice", "reproduce", "--all", "--json")
    assert reproduced.code == 0, reproduced  # every invoice the demo made, from its raw events
    assert len(reproduced.json()) == len(first["invoices"])
    assert all(r["reproduced"] and r["digest"] for r in reproduced.json())
    again = (await tally(settings, "demo", "--events", "3000", "--format", "json")).json()
    assert again["balances"] == first["balances"]
    assert again["invoices"] == first["invoices"]
    assert again["consumed"].get("metered", 0) == 0
    assert again["verified"] is True
    assert first["api_key"].startswith("tally_") and again["api_key"] != first["api_key"]
    assert first["dashboard"] == f"/ui/orgs/globex?period={first['period']}"


async def test_every_command_the_demo_prints_runs_as_printed(settings: Settings) -> None:
    """Started with ``uv run tally demo``, the demo prints ``uv run tally ...`` (the venv's
    ``tally`` is not on the newcomer's PATH); started as ``tally demo``, plain ``tally``."""
    plain_env = {k: v for k, v in env_for(settings).items() if not k.startswith("UV_RUN")}
    under_uv = plain_env | {"UV_RUN_RECURSION_DEPTH": "1"}
    plain = await tally(settings, "demo", "--events", "300", env=plain_env)
    uv = await tally(settings, "demo", "--events", "300", env=under_uv)
    assert plain.code == 0 and uv.code == 0, (plain, uv)
    command = re.compile(r"`((?:uv run )?tally [^`]+)`|(?:Try:|·) ((?:uv run )?tally [^·\n]+)")
    printed = [a or b for a, b in command.findall(uv.stdout)]
    assert len(printed) >= 6 and all(line.startswith("uv run tally ") for line in printed)
    assert not re.search(
        r"(?<!uv run )\btally (ledger|invoice|dlq|events|stop|serve|apikey)", uv.said
    )
    assert "uv run tally" not in plain.said and "tally ledger balances" in plain.said
    runnable = [
        shlex.split(line.strip())[3:]
        for line in printed
        if not re.search(r"tally (serve|stop|events show SOURCE)", line)
    ]
    ran = await asyncio.gather(*(tally(settings, *args, env=under_uv) for args in runnable))
    assert [run.code for run in ran] == [0] * len(runnable), ran
    assert any(args[:2] == ["apikey", "revoke"] for args in runnable)


def distinct_keys(events: int) -> set[tuple[str, str]]:
    """The (source, id) keys of the bench's mix (seed 7, 20 organizations); an entry with
    none keys on its place in the stream, as the bare pipeline keys it."""
    mix = LoadMix(bench_orgs(20), "2026-10", events, seed=7, duplicates=0.01, bad=0.01)
    return {key_of(str(n), entry.fields.get("event")) for n, entry in enumerate(mix)}


async def test_the_benchmark_drains_every_event_and_measures_latency(settings: Settings) -> None:
    """Smoke run of ``tally bench`` (no timing is asserted: figures come from real runs)."""
    drain, steady = await tally_all(
        settings,
        ["bench", "--events", "3000", "--consumers", "2", "--batch-size", "500", "--json"],
        ["bench", "--rate", "400", "--seconds", "2", "--json"],
    )
    figures = drain.json()
    assert figures["events"] == 3000 and figures["consumers"] == 2
    assert figures["entries_posted"] > 0 and figures["events_per_second"] > 0
    assert figures["verified"] is True and figures["findings"] == []
    # the bare pipeline it is read against really did its job: every entry acknowledged,
    # none left pending, one committed row per distinct (source, id)
    bare = figures["pipeline"]
    assert bare["entries"] == bare["acknowledged"] == 3000 and bare["pending"] == 0
    assert bare["rows_inserted"] == bare["rows_stored"] == len(distinct_keys(3000))
    assert figures["pipeline_events_per_second"] > 0
    assert figures["ratio"] == pytest.approx(
        figures["events_per_second"] / figures["pipeline_events_per_second"], abs=0.001
    )
    for name in ("consumer_cpu_s_per_100k", "pipeline_cpu_s_per_100k", "consumer_peak_rss_mb"):
        assert figures[name] > 0, name
    for name in ("postgres_cpu_s_per_100k", "pipeline_postgres_cpu_s_per_100k"):
        assert figures[name] is None or figures[name] >= 0, name
    latency = steady.json()
    assert latency["events"] == 800
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]


async def test_consume_refuses_a_shard_that_does_not_exist(settings: Settings) -> None:
    sharded = settings.model_copy(update={"stream_shards": 4})
    wrong = await tally(sharded, "consume", "--shards", "1,4")
    assert wrong.code == 2, wrong
    assert "with TALLY_STREAM_SHARDS=4 the shards are 0 to 3" in wrong.said
