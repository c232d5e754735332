"""The ledger's read side against real PostgreSQL: balances as of any instant, the trial
balance, entries pages under concurrent posting, an invoice's lineage, the ADS export."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from support.ads_support import assert_round_trips, trial_balance_accounts
from support.close_support import close, license_day, meter
from support.ledger_support import ai, api
from tally.adapters.postgres.connection import raw_connection, raw_transaction
from tally.adapters.postgres.journal import Journal
from tally.adapters.postgres.reads import accounts, balances, cursors, entries, gl_export, lineage
from tally.adapters.postgres.reads.trial_balance import trial_balance
from tally.adapters.postgres.verification import verify
from tally.adapters.tabular import StreamFormat, write_stream
from tally.domain import ads
from tally.domain.ledger import PLATFORM, Account, Entry, Line
from tally.service_layer.metering import MeteringService

OCT = "2026-10"
START = datetime(2026, 10, 30, tzinfo=UTC)
examples = itertools.count()


def transfer(key: str, debit: Account, credit: Account, amount: Decimal) -> Entry:
    return Entry(key, "test", None, OCT, None, (Line(debit, amount), Line(credit, -amount)))


# A posting: (seconds after START, amount); instants are asked about the same way.
posting = st.tuples(st.integers(0, 4 * 86_400), st.integers(-(10**6), 10**6))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    postings=st.lists(posting, min_size=1, max_size=25),
    instants=st.lists(st.integers(-10, 5 * 86_400), min_size=1, max_size=10),
)
async def test_a_balance_as_of_any_instant_is_the_sum_of_the_lines_posted_until_then(
    engine: AsyncEngine, postings: list[tuple[int, int]], instants: list[int]
) -> None:
    """Posting times in any order (ids then disagree with time), across UTC days."""
    n = next(examples)
    account = Account(PLATFORM, OCT, f"unit{n}", "asset")
    other = Account(PLATFORM, OCT, f"unit{n}", "equity")
    for i, (seconds, cents) in enumerate(postings):
        journal = Journal(clock=lambda s=seconds: START + timedelta(seconds=s))
        async with raw_transaction(engine) as conn:
            await journal.post(conn, [transfer(f"t{n}-{i}", account, other, Decimal(cents) / 100)])
    async with raw_connection(engine) as conn:
        for offset in instants:
            instant = START + timedelta(seconds=offset)
            expected = sum(
                (Decimal(c) / 100 for s, c in postings if START + timedelta(seconds=s) <= instant),
                Decimal(0),
            )
            found = await balances.balance(
                conn, account.code, await cursors(conn), instant, limit=1000
            )
            assert found is not None
            assert found.balance == expected
            assert found.debits - found.credits == expected
            assert sum(m.amount for m in found.movements.items) == expected
            assert all(m.posted_at <= instant for m in found.movements.items)


async def test_an_unknown_account_has_no_balance(engine: AsyncEngine) -> None:
    async with raw_connection(engine) as conn:
        assert (
            await balances.balance(
                conn, "org/nobody/2026-10/api_request/usage", await cursors(conn)
            )
            is None
        )


async def october(service: MeteringService, engine: AsyncEngine) -> None:
    """Licenses, API requests and AI usage of two organizations, closed."""
    payloads = [
        license_day("acme-lic", "gc2", "named", 20, org="acme", day="2026-10-05"),
        license_day("globex-lic", "gc1", "named", 1, org="globex", day="2026-10-05"),
        *(api(f"acme-{i}", count=400_000, org="acme") for i in range(6)),
        *(api(f"globex-{i}", count=30_000 + i, org="globex") for i in range(4)),
        ai("globex-ai", "voice_bot", "170", "minute", org="globex"),
        ai("acme-ai", "agent_copilot", "6000", "token", org="acme"),
    ]
    for chunk in (payloads[:5], payloads[5:9], payloads[9:]):  # several usage entries
        await meter(service, chunk)
    await close(engine, OCT)


async def test_the_trial_balance_balances_and_closes_on_the_accounts_balances(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await october(service, engine)
    async with raw_connection(engine) as conn:
        found = await trial_balance(conn, OCT)
        listed = [
            row async for row in accounts.account_listing(accounts.AccountFilter()).iter_rows(conn)
        ]
        assert found.balanced and found.totals
        assert {total.unit for total in found.totals} == {"api_request", "ai_token", "USD", "EUR"}
        for total in found.totals:
            assert total.debits == total.credits > 0
        current = {row.code: row.balance for row in listed if row.balance}
        assert {row.account: row.closing for row in found.rows if row.closing} == current
        usd = await trial_balance(conn, OCT, "USD")
        assert [total.unit for total in usd.totals] == ["USD"]
        assert {row.account for row in usd.rows} == {
            row.account for row in found.rows if row.unit == "USD"
        }
        later = await trial_balance(conn, "2026-11")  # October opens November
        assert {row.account: row.opening for row in later.rows} == current
        assert all(row.debits == row.credits == 0 for row in later.rows)
    assert (await verify(engine)).ok


async def test_entries_pages_return_every_entry_once_while_entries_are_posted(
    engine: AsyncEngine,
) -> None:
    debit, credit = Account(PLATFORM, OCT, "pages", "a"), Account(PLATFORM, OCT, "pages", "b")
    journal = Journal()

    async def post(prefix: str, count: int) -> None:
        for i in range(count):
            async with raw_transaction(engine) as conn:
                await journal.post(conn, [transfer(f"{prefix}{i}", debit, credit, Decimal(1))])
                journal.committed()

    await post("before-", 40)
    filters = entries.EntryFilter(account=debit.code)
    async with raw_connection(engine) as conn:
        existing = {
            row.id
            for row in (
                await entries.entry_listing(filters).page(conn, await cursors(conn), None, 1000)
            ).items
        }
    assert len(existing) == 40

    async def page_through() -> list[int]:
        seen: list[int] = []
        after = None
        async with raw_connection(engine) as conn:
            while True:
                page = await entries.entry_listing(filters).page(
                    conn, await cursors(conn), after, 3
                )
                seen.extend(row.id for row in page.items)
                if page.next is None:
                    return seen
                after = page.next
                await asyncio.sleep(0)

    seen, _ = await asyncio.gather(page_through(), post("during-", 30))
    counts = Counter(seen)
    assert all(counts[entry] == 1 for entry in existing)
    assert max(counts.values()) == 1 and seen == sorted(seen)


async def test_lineage_reaches_every_event_each_invoice_bills(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await october(service, engine)
    async with raw_connection(engine) as conn:
        numbers = [r["number"] for r in await conn.fetch("SELECT number FROM invoice")]
        assert len(numbers) == 2
        for number in numbers:
            org = await conn.fetchval("SELECT org FROM invoice WHERE number = $1", number)
            rows, after = [], None
            while True:
                page = await lineage.lineage_listing(number).page(
                    conn, await cursors(conn), after, 2
                )
                rows.extend(page.items)
                if page.next is None:
                    break
                after = page.next
            streamed = [row async for row in lineage.lineage_listing(number).iter_rows(conn)]
            assert streamed == rows
            billed = {(row.source, row.event_id) for row in rows if row.source}
            metered = {
                (r["source"], r["id"])
                for r in await conn.fetch(
                    "SELECT source, id FROM usage_event WHERE org = $1 AND status = 'metered'",
                    org,
                )
            }
            assert billed == metered and len(billed) > 2
            kinds = {row.entry_kind for row in rows}
            assert {"usage", "grant"} <= kinds
            for row in rows:
                if row.source:
                    raw = await conn.fetchval(
                        "SELECT encode(sha256(raw), 'hex') FROM usage_event"
                        " WHERE source = $1 AND id = $2",
                        row.source,
                        row.event_id,
                    )
                    assert row.sha256 == raw
        assert not await lineage.invoice_exists(conn, 999)


async def test_one_entry_shows_its_lines_events_and_chain_position(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await meter(service, [api("one", count=3), api("two", count=4)])
    async with raw_connection(engine) as conn:
        entry_id = await conn.fetchval("SELECT entry_id FROM usage_event WHERE id = 'one'")
        found = await entries.entry(conn, entry_id, raw=True)
        assert found is not None and found.kind == "usage"
        assert sum(line.amount for line in found.lines) == 0
        assert {line.side for line in found.lines} == {"debit", "credit"}
        assert {event.id for event in found.events} == {"one", "two"}
        assert all(event.raw and '"id"' in event.raw for event in found.events)
        stored = await conn.fetchrow(
            "SELECT lane, seq, encode(hash, 'hex') AS hash FROM journal_entry WHERE id = $1",
            entry_id,
        )
        assert (found.chain.lane, found.chain.seq, found.chain.hash) == tuple(stored)
        assert (await entries.entry(conn, entry_id)).events[0].raw is None  # type: ignore[union-attr]
        assert await entries.entry(conn, 10**9) is None
        async with conn.transaction():  # inside a caller's transaction, as the API may call
            assert (await entries.entry(conn, entry_id)) == found.model_copy(
                update={"events": [e.model_copy(update={"raw": None}) for e in found.events]}
            )


async def export(engine: AsyncEngine, shape: str) -> str:
    """The CSV ``tally ledger export`` writes of October."""
    out = io.StringIO()
    write = gl_export.write_gl_detail if shape == "gl" else gl_export.write_trial_balance
    async with raw_connection(engine) as conn:
        await write(conn, OCT, out, StreamFormat.csv)
    return out.getvalue()


async def defined_gl_detail(engine: AsyncEngine, period: str, fmt: StreamFormat) -> str:
    """The GL Detail as ``ads.gl_detail`` defines it, line by line from the stored lines."""
    out = io.StringIO()
    async with raw_connection(engine) as conn:
        records = await conn.fetch(
            """SELECT e.id, row_number() OVER (PARTITION BY e.id ORDER BY l.id), e.kind,
                      e.idempotency_key, e.org, e.period, e.posted_at, a.code, a.kind,
                      a.unit, l.amount
                 FROM journal_entry e JOIN entry_line l ON l.entry_id = e.id
                 JOIN account a ON a.id = l.account_id
                WHERE e.period = $1 ORDER BY e.id, l.id""",
            period,
        )

    async def rows() -> AsyncIterator[tuple[str, ...]]:
        for record in records:
            yield ads.gl_detail(ads.LedgerLine(*record))

    await write_stream(out, ads.GL_DETAIL_FIELDS, rows(), fmt)
    return out.getvalue()


async def exported_gl_detail(engine: AsyncEngine, period: str, fmt: StreamFormat) -> str:
    out = io.StringIO()
    async with raw_connection(engine) as conn:
        await gl_export.write_gl_detail(conn, period, out, fmt)
    return out.getvalue()


# A line: microseconds after START (some past October's end), digits, places (1.500 keeps
# its zeros in the ledger, not in the export), sign.
line = st.tuples(
    st.integers(0, 3 * 86_400 * 10**6), st.integers(1, 10**12), st.integers(0, 8), st.booleans()
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lines=st.lists(line, min_size=1, max_size=12))
async def test_the_sql_gl_detail_is_byte_for_byte_the_ads_mapping(
    engine: AsyncEngine, lines: list[tuple[int, int, int, bool]]
) -> None:
    """PostgreSQL computes the columns the COPY export streams; ``ads.gl_detail`` is their
    definition: both give the same CSV and JSON, whatever the amounts and posting times."""
    n = next(examples)
    debit = Account(PLATFORM, OCT, f"unit{n}", "asset")
    credit = Account(PLATFORM, OCT, f"unit{n}", "equity")
    for i, (micros, digits, places, negative) in enumerate(lines):
        amount = Decimal(-digits if negative else digits).scaleb(-places)
        journal = Journal(clock=lambda m=micros: START + timedelta(microseconds=m))
        async with raw_transaction(engine) as conn:
            await journal.post(conn, [transfer(f"ads{n}-{i}", debit, credit, amount)])
    for fmt in StreamFormat:
        exported = await exported_gl_detail(engine, OCT, fmt)
        assert exported == await defined_gl_detail(engine, OCT, fmt)
    assert exported.count('"journalId"') >= 2 * len(lines)


async def test_the_ads_export_round_trips_balanced_and_equal_to_the_trial_balance(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await october(service, engine)
    exported = await export(engine, "gl")
    assert exported == await defined_gl_detail(engine, OCT, StreamFormat.csv)  # SQL = mapping
    detail = list(csv.DictReader(io.StringIO(exported)))
    shaped = list(csv.DictReader(io.StringIO(await export(engine, "tb"))))
    async with raw_connection(engine) as conn:
        found = await trial_balance(conn, OCT)
    accounts = trial_balance_accounts(found.model_dump()["rows"])
    units = assert_round_trips(detail, shaped, OCT, accounts)
    assert units == {"api_request", "ai_token", "USD", "EUR"}
    assert all(row["effectiveDate"] <= "2026-10-31" for row in detail)


async def test_verify_names_a_rollup_that_disagrees_with_the_lines(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService
) -> None:
    await meter(service, [api("r1", count=3)])
    assert (await verify(engine)).ok
    async with raw_connection(owner) as conn:
        await conn.execute(
            """UPDATE account_day SET debits = debits + 1, lines = lines + 1
                WHERE account_id = (SELECT id FROM account
                                     WHERE code = 'org/acme/2026-10/api_request/usage')"""
        )
    findings = [f for f in (await verify(engine)).findings if f.check == "rollup"]
    assert len(findings) == 1
    assert "account_day of org/acme/2026-10/api_request/usage" in findings[0].detail


async def test_a_reader_leaving_the_export_early_stops_it_quietly(engine: AsyncEngine) -> None:
    """An API client that hangs up mid-export: the rest of the COPY is dropped without an
    error, its connection answers the next query, and the next export is whole."""
    debit = Account(PLATFORM, OCT, "unit-early", "asset")
    credit = Account(PLATFORM, OCT, "unit-early", "equity")
    async with raw_transaction(engine) as conn:
        await Journal().post(
            conn, [transfer(f"early-{i}", debit, credit, Decimal(i + 1)) for i in range(5000)]
        )
    async with raw_connection(engine) as conn:
        chunks = gl_export.gl_detail_csv(conn, OCT)
        assert (await anext(chunks)).startswith(b"journalId,")
        await chunks.aclose()
        assert await conn.fetchval("SELECT count(*) FROM entry_line") == 10_000
        copied: list[int] = []
        whole = b"".join([c async for c in gl_export.gl_detail_csv(conn, OCT, copied.append)])
    assert copied == [10_000] and whole.count(b"\n") == 10_001
