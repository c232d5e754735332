"""Reproducible invoices against real PostgreSQL: every invoice recomputed from the stored raw
events alone is the stored one byte for byte, with the input digest the close recorded; a
row changed behind the ledger's back is named (which figure, which input, which event).

Every test of the close also reproduces each invoice it makes (``support.close_support.
close``); these add the cases that need a closer look."""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from support.close_support import close, document, license_day, meter, reproduced
from support.ledger_support import ai, api, event
from tally import bootstrap
from tally.adapters.postgres import schema
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.ratecard_files import bundled_cards
from tally.service_layer import organizations
from tally.service_layer.metering import MeteringService
from tally.service_layer.reproduce import Reproduction, reproduce

AUG, SEP, OCT = "2026-08", "2026-09", "2026-10"
CARD = bundled_cards()[-1]
runs = itertools.count()


def fair_use_example(org: str) -> list[bytes]:
    """gc2 named, 20 users, 3,000,000 billable requests (the fair-use policy's worked example)."""
    return [
        license_day(f"{org}-lic", "gc2", "named", 20, org=org, day="2026-10-05"),
        *(api(f"{org}-{n}", count=1_000_000, org=org) for n in range(3)),
        api(f"{org}-ui", count=5_000, kind="ui", org=org),  # not billable: never billed
    ]


async def number_of(engine: AsyncEngine, org: str, period: str) -> int:
    return int((await document(engine, org, period))["number"].removeprefix("INV-"))


async def reproduce_invoice(engine: AsyncEngine, org: str, period: str) -> Reproduction:
    return await reproduce(bootstrap.database(engine), await number_of(engine, org, period))


def field(value: str | bytes) -> bytes:
    """The docs' byte form, written again from the docs alone (hashlib and the stored rows)."""
    data = value.encode() if isinstance(value, str) else value
    return len(data).to_bytes(4, "big") + data


async def test_the_fair_use_example_reproduces_with_the_digest_the_docs_describe(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await meter(service, [*fair_use_example("acme"), *fair_use_example("initech")])
    await close(engine, OCT)
    acme = await reproduce_invoice(engine, "acme", OCT)
    assert acme.reproduced and acme.identical and acme.differences == ()
    assert (acme.currency, str(acme.total), acme.events) == ("USD", "80.00", 3)
    assert acme.digest is not None and acme.digest == acme.digest_now
    initech = await reproduce_invoice(engine, "initech", OCT)  # JPY: no minor unit
    assert initech.reproduced and str(initech.total) == "9600"

    # an outsider recomputes the digest from the docs: header, then each part by name
    async with raw_connection(engine) as conn:
        body = await conn.fetchval(
            "SELECT body::text FROM rate_card WHERE version = $1", CARD.version
        )
        raws = {
            row["id"]: bytes(row["raw"])
            for row in await conn.fetch("SELECT id, raw FROM usage_event WHERE org = 'acme'")
        }
        stored = await conn.fetchrow(
            "SELECT digest, parts::text AS parts FROM invoice_input n JOIN invoice i"
            " ON i.number = n.invoice WHERE i.org = 'acme'"
        )
    canonical = json.dumps(
        json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )

    def part(name: str, records: list[bytes]) -> bytes:
        digest = hashlib.sha256(b"".join(sorted(records))).digest()
        return field(name) + field(str(len(records))) + field(digest)

    billed = [
        field("test") + field(i) + field(hashlib.sha256(raws[i]).digest()) + field("1")
        for i in ("acme-0", "acme-1", "acme-2")
    ]
    license_ = [
        field("test") + field("acme-lic") + field(hashlib.sha256(raws["acme-lic"]).digest())
    ]
    not_billed = [
        field("test") + field("acme-ui") + field(hashlib.sha256(raws["acme-ui"]).digest())
    ]
    expected = hashlib.sha256(
        b"".join(
            field(value)
            for value in ("tally invoice input 1", acme.number, "acme", OCT, "USD", CARD.version)
        )
        + field(hashlib.sha256(canonical.encode()).digest())
        + part("commitments", [])
        + part("license reports", license_)
        + part("line ai_tokens", [])
        + part("line api_requests", billed)
        + part("not billed", not_billed)
        + part("token purchases", [])
    ).hexdigest()
    assert acme.digest == expected == bytes(stored["digest"]).hex()
    covered = {p["part"]: p["items"] for p in json.loads(stored["parts"])}
    assert covered == {
        "commitments": 0,
        "license reports": 1,
        "line ai_tokens": 0,
        "line api_requests": 3,
        "not billed": 1,
        "token purchases": 0,
    }


async def test_ai_tokens_and_late_usage_over_several_invoices_reproduce(
    engine: AsyncEngine, service: MeteringService
) -> None:
    """AI tokens of several features over several batches, then late usage of August (API
    and AI) billed as an adjustment in September and again in October: each adjustment's
    tokens are the conversion of the running quantity after it, less before it."""
    db = bootstrap.database(engine)
    await organizations.add_commitment(db, "globex", "gc2", "named", Decimal(3), "2026-01")
    august = {"org": "globex", "time": f"{AUG}-20T12:00:00Z"}
    await meter(
        service,
        [
            license_day("g-lic", "gc2", "named", 2, org="globex", day=f"{AUG}-02"),
            ai("g-va", "virtual_agent", 100, "session", **august),
            ai("g-vb", "voice_bot", "3.5", "minute", **august),
        ],
    )
    await meter(service, [ai("g-vb2", "voice_bot", 7, "minute", **august)])
    await meter(
        service,
        [ai("g-sc", "ai_scoring", 31, "evaluation", **august), api("g-r", count=9, **august)],
    )
    await close(engine, AUG)
    await meter(service, [ai("g-late-1", "voice_bot", 11, "minute", **august)])
    await meter(
        service,
        [ai("g-late-2", "ai_translate", 250, "minute", **august), api("g-late-r", 5, **august)],
    )
    await close(engine, SEP)
    await meter(service, [ai("g-late-3", "voice_bot", 13, "minute", **august)])
    # recorded after the invoices: they change none of them
    await organizations.add_commitment(db, "globex", "gc2", "named", Decimal(50), "2026-01")
    await meter(
        service, [license_day("g-lic-2", "gc2", "named", 40, org="globex", day=f"{AUG}-03")]
    )
    await close(engine, OCT)

    for period, adjusted in ((SEP, {"ai_tokens", "api_requests"}), (OCT, {"ai_tokens"})):
        doc = await document(engine, "globex", period)
        assert {a["meter"] for a in doc["adjustments"]} == adjusted
    done = await reproduced(engine)
    assert len(done) == 3 and all(r.digest == r.digest_now for r in done)
    assert {r.period: r.events for r in done} == {AUG: 5, SEP: 3, OCT: 1}


async def test_raw_bytes_changed_behind_the_ledger_are_named(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService
) -> None:
    await meter(service, fair_use_example("acme"))
    await close(engine, OCT)
    async with raw_connection(owner) as conn:  # a superuser, triggers off
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(
            """UPDATE usage_event SET raw = convert_to(replace(convert_from(raw, 'UTF8'),
                   '"count": 1000000', '"count": 1500000'), 'UTF8')
                WHERE id = 'acme-1'"""
        )
        await conn.execute("SET session_replication_role = origin")
    result = await reproduce_invoice(engine, "acme", OCT)
    assert not result.reproduced and not result.identical
    assert "line api_requests used: stored 3000000, reproduced 3500000" in result.differences
    assert "line api_requests amount: stored 80.00, reproduced 130.00" in result.differences
    assert "total: stored 80.00, reproduced 130.00" in result.differences
    assert result.digest_differences == ("line api_requests changed (3 at the close, 3 now)",)
    assert result.events_changed == (
        "event (test, acme-1): its raw bytes now say 1,500,000 requests, it was metered as "
        "1,000,000 requests",
    )


async def test_a_change_that_leaves_the_figures_alone_still_breaks_the_digest(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService
) -> None:
    await meter(service, fair_use_example("acme"))
    await close(engine, OCT)
    async with raw_connection(owner) as conn:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(
            "UPDATE usage_event SET raw = raw || ' '::bytea WHERE id IN ('acme-2', 'acme-lic')"
        )
        await conn.execute("SET session_replication_role = origin")
    result = await reproduce_invoice(engine, "acme", OCT)
    assert result.identical and not result.reproduced  # same invoice, other inputs
    assert result.digest_differences == (
        "license reports changed (1 at the close, 1 now)",
        "line api_requests changed (3 at the close, 3 now)",
    )


FEATURES = sorted(CARD.ai.features)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    usage=st.lists(
        st.tuples(
            st.sampled_from([*FEATURES, "api"]),
            st.decimals(min_value=0, max_value=5_000, places=3),
            st.booleans(),  # late: metered after the close, billed on the next invoice
        ),
        min_size=1,
        max_size=12,
    ),
    cuts=st.lists(st.integers(0, 12), max_size=6),
    currency=st.sampled_from(sorted(CARD.currencies)),
)
async def test_any_usage_in_any_batches_reproduces(
    engine: AsyncEngine,
    service: MeteringService,
    usage: list[tuple[str, Decimal, bool]],
    cuts: list[int],
    currency: str,
) -> None:
    """Random usage, split into random batches (some late): every invoice reproduces."""
    run = next(runs)
    org = f"repro{run}"
    await organizations.add(bootstrap.database(engine), org, currency)
    payloads = []
    for n, (feature, amount, late) in enumerate(usage):
        where = {"org": org, "time": f"{SEP}-15T12:00:00Z", "source": f"run{run}"}
        if feature == "api":
            payloads.append((late, api(f"{n}", count=int(amount) + 1, **where)))
        else:
            unit = CARD.ai.features[feature].unit
            payloads.append((late, ai(f"{n}", feature, f"{amount:f}", unit, **where)))
    license_ = license_day("lic", "gc2", "named", 2, org=org, day=f"{SEP}-01")
    for late in (False, True):
        batch = [p for is_late, p in payloads if is_late == late]
        if not late:
            batch.append(license_.replace(b'"source": "test"', f'"source": "run{run}"'.encode()))
        for start, end in itertools.pairwise(
            [0, *sorted(c % (len(batch) + 1) for c in cuts), len(batch)]
        ):
            if batch[start:end]:
                await meter(service, batch[start:end])
        await close(engine, SEP if not late else OCT)  # reproduces every invoice


def voiding(event_id: str, target: str, time: str) -> bytes:
    data = {"source": "test", "id": target, "reason": "sent twice"}
    return event("tally.void", event_id, data, org="globex", time=time)


async def test_voided_events_count_negatively_in_the_figures_and_the_digest(
    engine: AsyncEngine, service: MeteringService
) -> None:
    """A void in an open period is billed net on the line; one in a closed period (an API
    request and AI sessions) is credited by the next invoice's adjustments: each reversal
    carries its event, which the digest covers with the sign -1."""
    september = {"org": "globex", "time": f"{SEP}-10T00:00:00Z"}
    await meter(
        service,
        [
            license_day("g-lic", "gc2", "named", 1, org="globex", day=f"{SEP}-01"),
            api("g-1", count=200_000, **september),
            api("g-2", count=50_000, **september),
            ai("g-va", "virtual_agent", 200, "session", **september),
            ai("g-vb", "voice_bot", 40, "minute", **september),
        ],
    )
    await meter(service, [voiding("v-1", "g-2", f"{SEP}-12T00:00:00Z")])
    await close(engine, SEP)
    await meter(
        service,
        [
            voiding("v-2", "g-1", f"{OCT}-01T00:00:00Z"),
            voiding("v-3", "g-vb", f"{OCT}-01T00:00:00Z"),
        ],
    )
    await close(engine, OCT)  # reproduces both invoices

    assert (await document(engine, "globex", SEP))["total"] > 0
    credits = (await document(engine, "globex", OCT))["adjustments"]
    assert {a["meter"] for a in credits} == {"api_requests", "ai_tokens"}
    assert all(a["amount"] <= 0 for a in credits)
    async with raw_connection(engine) as conn:
        covered = {
            row["number"]: {p["part"]: p["items"] for p in json.loads(row["parts"])}
            for row in await conn.fetch(
                "SELECT i.number, n.parts::text AS parts FROM invoice_input n"
                " JOIN invoice i ON i.number = n.invoice WHERE i.org = 'globex'"
            )
        }
    first, second = sorted(covered)
    assert covered[first]["line api_requests"] == 3  # g-1, g-2, and g-2 taken back
    assert covered[second][f"adjustment INV-{first:06d} api_requests"] == 1
    assert covered[second][f"adjustment INV-{first:06d} ai_tokens"] == 1


async def test_a_rate_card_loaded_after_the_close_never_changes_how_an_invoice_reproduces(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService
) -> None:
    """A card effective from the invoiced month, loaded after its close, that would bill
    nothing of the month's requests and convert voice-bot minutes otherwise: the invoice
    still reproduces, each event rated by the card that metered it."""
    await meter(service, [*fair_use_example("acme"), ai("acme-vb", "voice_bot", 170, "minute")])
    await close(engine, OCT)
    card = (await service.book()).cards[0]
    later = card.model_copy(
        update={
            "version": "2026-10-later",
            "effective_from": datetime(2026, 10, 1, tzinfo=UTC),
            "api": card.api.model_copy(
                update={
                    "billable_client_kinds": card.api.billable_client_kinds - {"integration"},
                    "non_billable_client_kinds": card.api.non_billable_client_kinds
                    | {"integration"},
                }
            ),
        }
    )
    await schema.load_rate_cards(owner, [later])
    result = await reproduce_invoice(engine, "acme", OCT)
    assert result.reproduced, result


async def test_an_invoice_without_a_digest_does_not_reproduce_once_its_events_changed(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService
) -> None:
    """An invoice issued before its digest was recorded (migration 0021) has only its events
    to show it billed them: one that now says it is another event is a failure."""
    await meter(service, fair_use_example("acme"))
    await close(engine, OCT)
    async with raw_connection(owner) as conn:  # a superuser, triggers off
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("DELETE FROM invoice_input")
        await conn.execute(
            """UPDATE usage_event SET raw = convert_to(replace(convert_from(raw, 'UTF8'),
                   '"acme-2"', '"other-9"'), 'UTF8') WHERE id = 'acme-2'"""
        )
        await conn.execute("SET session_replication_role = origin")
    result = await reproduce_invoice(engine, "acme", OCT)
    assert result.identical and result.digest is None
    assert not result.reproduced
    assert any("other-9" in note for note in result.events_changed), result.events_changed


async def test_a_request_not_billed_whose_bytes_now_say_billable_is_named(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService
) -> None:
    """The period's requests of a kind not billable are inputs too: rewritten as billable
    behind the ledger's back, the digest's part and the event are named."""
    await meter(service, fair_use_example("acme"))
    await close(engine, OCT)
    async with raw_connection(owner) as conn:  # a superuser, triggers off
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(
            """UPDATE usage_event SET raw = convert_to(replace(convert_from(raw, 'UTF8'),
                   '"client_kind": "ui"', '"client_kind": "integration"'), 'UTF8')
                WHERE id = 'acme-ui'"""
        )
        await conn.execute("SET session_replication_role = origin")
    result = await reproduce_invoice(engine, "acme", OCT)
    assert not result.reproduced
    assert result.digest_differences == ("not billed changed (1 at the close, 1 now)",)
    assert result.events_changed == (
        "event (test, acme-ui): its raw bytes now say 5,000 requests, it was recorded as "
        "5,000, not billed (a request not billable, or a license report)",
    )
