"""The database protects the ledger from its own services, and verify sees what a
superuser could still do behind their back."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from support.close_support import close, license_day, meter
from support.ledger_support import ORGS, ai, api, event, urls_of
from tally import bootstrap
from tally.adapters.postgres import schema
from tally.adapters.postgres.connection import raw_connection, raw_transaction
from tally.adapters.postgres.databases import dsn
from tally.adapters.postgres.privileges import (
    READER,
    READER_COLUMNS,
    WRITER,
    WRITER_DELETES,
    WRITER_READ_ONLY,
    WRITER_UPDATES,
)
from tally.adapters.postgres.verification import CHECKS, verify
from tally.config import Settings
from tally.service_layer import organizations
from tally.service_layer.metering import MeteringService, replay_dead_letters

OCT = "2026-10"


async def ledger_with_invoices(service: MeteringService, engine: AsyncEngine) -> None:
    """Usage, a duplicate, a conflict and a dead letter on stream ``s``; October closed."""
    payloads = []
    for n, org in enumerate(ORGS):
        payloads += [
            license_day(f"{org}-lic", "gc2", "named", 10 + n, org=org, day="2026-10-03"),
            api(f"{org}-r", count=1_500_000 + 100_000 * n, org=org),
            ai(f"{org}-ai", "virtual_agent", 1_300 + 500 * n, "session", org=org),
        ]
    await meter(service, payloads)
    await meter(service, [api("acme-r", count=1_500_000), api("acme-r", count=7)])
    await service.process("s", [("900-0", {b"junk": b"x"})])
    await close(engine, OCT)
    assert (await verify(engine)).ok


# ------------------------------------------------------------------ the writer's limits


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE journal_entry SET kind = 'x'",
        "DELETE FROM journal_entry",
        "TRUNCATE journal_entry CASCADE",
        "UPDATE entry_line SET amount = 0",
        "DELETE FROM entry_line",
        "TRUNCATE entry_line",
        "UPDATE usage_event SET quantity = 0",
        "DELETE FROM usage_event",
        "TRUNCATE usage_event CASCADE",
        "UPDATE invoice SET total = 0",
        "DELETE FROM invoice",
        "TRUNCATE invoice CASCADE",
        "DELETE FROM duplicate_delivery",
        "DELETE FROM dead_letter",
        "UPDATE dead_letter SET reason = 'nothing to see'",
        "DELETE FROM delivery_tally",
        "UPDATE delivery_tally SET dead_letters = 0",
        "UPDATE organization SET currency = 'EUR' WHERE name = 'acme'",
        "ALTER TABLE invoice DISABLE TRIGGER ALL",
        "ALTER TABLE entry_line DISABLE TRIGGER entry_line_immutable",
        "SET session_replication_role = replica",
    ],
)
async def test_the_writer_cannot_rewrite_or_remove_what_is_posted(
    engine: AsyncEngine, service: MeteringService, statement: str
) -> None:
    await ledger_with_invoices(service, engine)
    async with raw_connection(engine) as conn:  # the services' connection
        assert await conn.fetchval("SELECT current_user") == WRITER
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
        await conn.execute("RESET ROLE")  # the role is the connection's own, not a SET
        assert await conn.fetchval("SELECT current_user") == WRITER
    assert (await verify(engine)).ok


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO organization (name, currency) VALUES ('hooli', 'USD')",
        "INSERT INTO dead_letter (stream, stream_id, raw, reason, code, received_at)"
        " VALUES ('s', '1-1', '', 'x', 'x', now())",
        "UPDATE ledger_lane SET seq = 0",
        "UPDATE meter_total SET quantity = quantity + 1",
        "UPDATE dead_letter SET replayed_at = now()",
        "DELETE FROM account",
        "TRUNCATE period_close",
        "SELECT secret FROM webhook",  # a webhook's signing secret is not the reader's
    ],
)
async def test_the_reader_can_only_read(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService, statement: str
) -> None:
    await ledger_with_invoices(service, engine)
    async with raw_connection(owner) as conn:
        await conn.execute(f"SET ROLE {READER}")
        assert await conn.fetchval("SELECT count(*) FROM invoice") == len(ORGS)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)


async def test_only_the_reader_may_open_and_revoke_page_sessions(
    engine: AsyncEngine, owner: AsyncEngine
) -> None:
    """The API's one way to write: the session functions, which write nothing else."""
    opening = "SELECT ui_session_open(repeat('a', 64), repeat('b', 64))"
    async with raw_connection(engine) as conn:  # the writer: no EXECUTE, no INSERT
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval(opening)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "INSERT INTO ui_session (id_hash, key_id, expires_at)"
                " VALUES (repeat('a', 64), 'x', now())"
            )
    async with raw_connection(owner) as conn:
        await conn.execute(f"SET ROLE {READER}")
        assert await conn.fetchval(opening) is None  # no key has that secret
        assert await conn.fetchval("SELECT ui_session_revoke(repeat('a', 64))") is False


async def test_grants_follow_the_policy_on_every_table_even_one_added_later(
    engine: AsyncEngine, owner: AsyncEngine, settings: Settings
) -> None:
    async with raw_connection(owner) as conn:
        await conn.execute("CREATE TABLE added_later (name text PRIMARY KEY)")
    await bootstrap.migrate(settings, urls_of(settings))  # again: the grants step covers it
    async with raw_connection(owner) as conn:
        rows = await conn.fetch(
            """SELECT grantee, table_name, privilege_type FROM information_schema.table_privileges
                WHERE grantee = ANY($1::text[]) AND table_schema = current_schema()""",
            [WRITER, READER],
        )
        columns = await conn.fetch(
            """SELECT table_name, column_name FROM information_schema.column_privileges
                WHERE grantee = $1 AND privilege_type = 'UPDATE'
                  AND table_schema = current_schema()""",
            WRITER,
        )
        owners = {
            row["tableowner"]
            for row in await conn.fetch(
                "SELECT tableowner FROM pg_tables WHERE schemaname = current_schema()"
            )
        }
    granted: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        granted.setdefault((row["grantee"], row["table_name"]), set()).add(row["privilege_type"])
    tables = {table for _, table in granted}
    assert "added_later" in tables and "delivery_tally" in tables
    for table in tables:
        writes = set() if table in WRITER_READ_ONLY else {"INSERT"}
        writes |= {"DELETE"} if table in WRITER_DELETES else set()  # the rollup deltas only
        assert granted[(WRITER, table)] == {"SELECT"} | writes, table
        reads = set() if table in READER_COLUMNS else {"SELECT"}  # only some columns
        assert granted.get((READER, table), set()) == reads, table
    updatable: dict[str, set[str]] = {}
    for row in columns:
        updatable.setdefault(row["table_name"], set()).add(row["column_name"])
    assert updatable == {table: set(cols) for table, cols in WRITER_UPDATES.items()}
    assert not owners & {WRITER, READER}


# ------------------------------------------------------------------ what verify finds


async def tamper(owner: AsyncEngine, *statements: str) -> None:
    """As the superuser, with every trigger (and foreign key) off."""
    async with raw_transaction(owner) as conn:
        await conn.execute("SET LOCAL session_replication_role = replica")
        for statement in statements:
            await conn.execute(statement)


def without_invoice(where: str) -> tuple[str, ...]:
    """Statements removing whole invoices (lines, features, billed entries too)."""
    numbers = f"(SELECT number FROM invoice WHERE {where})"
    return (
        f"DELETE FROM billed_entry WHERE invoice IN {numbers}",
        f"DELETE FROM invoice_line WHERE invoice IN {numbers}",
        f"DELETE FROM invoice_feature WHERE invoice IN {numbers}",
        f"DELETE FROM invoice WHERE {where}",
    )


@pytest.mark.parametrize(
    ("statements", "finding"),
    [
        (without_invoice("number = 2"), "invoice numbers"),
        (
            (*without_invoice("true"), "UPDATE invoice_counter SET last = 0"),
            "missing invoice",
        ),
        (
            (*without_invoice("number = 3"), "UPDATE invoice_counter SET last = 2"),
            "missing invoice",
        ),
        (("DELETE FROM invoice_line WHERE invoice = 1",), "invoice lines"),
        (
            ("DELETE FROM billed_entry WHERE entry_id IN"
             " (SELECT id FROM journal_entry WHERE kind = 'grant')",),
            "unbilled close entry",
        ),
        (("UPDATE organization SET currency = 'GBP' WHERE name = 'acme'",), "currency"),
        (("UPDATE usage_event SET rate_card_version = 'x' WHERE status = 'metered'",),
         "unlinked event"),
        (("TRUNCATE duplicate_delivery",), "delivery tally"),
        (("TRUNCATE event_conflict",), "delivery tally"),
        (("TRUNCATE dead_letter",), "delivery tally"),
        (("UPDATE dead_letter SET replayed_at = now()",), "delivery tally"),
        (("DELETE FROM usage_event WHERE status = 'recorded'",
          "DELETE FROM license_usage"), "delivery tally"),
        (("UPDATE delivery_tally SET conflicts = 0",), "tally chain"),
        (("DELETE FROM delivery_tally WHERE seq = 1",), "tally chain"),
    ],
)  # fmt: skip
async def test_verify_names_what_a_superuser_removed_or_rewrote(
    engine: AsyncEngine,
    owner: AsyncEngine,
    service: MeteringService,
    statements: tuple[str, ...],
    finding: str,
) -> None:
    await ledger_with_invoices(service, engine)
    await tamper(owner, *statements)
    findings = (await verify(engine)).findings
    assert finding in {f.check for f in findings}, findings
    # every finding is one its check declares, and that check alone finds it too
    declared = {kind: check.name for check in CHECKS.values() for kind in check.findings}
    assert {f.check for f in findings} <= declared.keys()
    alone = (await verify(engine, only=[declared[finding]])).findings
    assert finding in {f.check for f in alone}, alone


async def test_verify_finds_the_missing_invoice_of_an_organization_without_usage(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService
) -> None:
    """No entry names it, but it existed when October closed: its invoice is owed."""
    async with raw_connection(owner) as conn:
        await conn.execute(
            "INSERT INTO organization (name, currency, created_at)"
            " VALUES ('zeta', 'USD', '2026-09-01T00:00:00Z')"
        )
    await ledger_with_invoices(service, engine)
    await tamper(owner, *without_invoice("org = 'zeta'"), "UPDATE invoice_counter SET last = 3")
    findings = (await verify(engine)).findings
    assert [(f.check, f.detail) for f in findings] == [
        ("missing invoice", "zeta 2026-10 was closed but has no invoice")
    ]


async def test_replayed_dead_letters_keep_the_tallies_whole(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await service.process("s", [("1-0", {b"event": api("h1", org="hooli")})])
    await organizations.add(bootstrap.database(engine), "hooli", "GBP")
    outcomes = await replay_dead_letters(service, None, 100)
    assert list(outcomes.values()) == ["metered"]
    assert await replay_dead_letters(service, None, 100) == {}
    await service.process("s", [("1-0", {b"event": api("h1", org="hooli")})])  # redelivered
    await service.process("s", [("2-0", {b"event": event("bad.type", "x", {})})])
    assert (await verify(engine)).ok


async def test_every_pooled_connection_acts_as_the_writer_even_after_a_reconnect(
    engine: AsyncEngine, owner: AsyncEngine
) -> None:
    """The role is set at connect: the pool's pre-ping replaces a killed connection with
    one that acts as ``tally_writer`` too; migrate's owner engine keeps the login role."""
    async with engine.connect() as connection:
        assert (await connection.exec_driver_sql("SELECT current_user")).scalar() == WRITER
        pid = (await connection.exec_driver_sql("SELECT pg_backend_pid()")).scalar()
    async with raw_connection(owner) as conn:
        assert await conn.fetchval("SELECT current_user") != WRITER
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    async with engine.connect() as connection:
        assert (await connection.exec_driver_sql("SELECT pg_backend_pid()")).scalar() != pid
        assert (await connection.exec_driver_sql("SELECT current_user")).scalar() == WRITER


async def test_a_ledger_migrated_from_0002_starts_with_opening_tallies(
    settings: Settings, database_url: str
) -> None:
    """Deliveries recorded before the tallies existed are tallied once, so verify passes."""
    await asyncio.to_thread(command.upgrade, schema.alembic_config(database_url), "0002")
    conn = await asyncpg.connect(dsn(database_url))
    try:
        await conn.execute(
            """INSERT INTO duplicate_delivery VALUES ('s', '1-0', 'src', 'e1', now());
               INSERT INTO dead_letter (stream, stream_id, raw, reason, code, received_at,
                                        replayed_at)
               VALUES ('s', '2-0', '', 'r', 'c', now(), now()), ('t', '3-0', '', 'r', 'c', now(),
                                                                 NULL)"""
        )
    finally:
        await conn.close()
    await bootstrap.migrate(settings, urls_of(settings))
    engine = bootstrap.engine(database_url)
    try:
        result = await verify(engine)
    finally:
        await engine.dispose()
    assert (result.ok, result.tallies) == (True, 2)
