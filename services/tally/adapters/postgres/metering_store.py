"""The metering consumer's reads and writes, all set-based (arrays, COPY), one batch at a time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

import asyncpg

from tally.adapters.postgres import alerts, rollups
from tally.adapters.postgres.journal import take_lane
from tally.adapters.postgres.reads.rate_cards import load_rate_cards as load_rate_cards
from tally.domain.alerts import UsageKey
from tally.domain.deliveries import DeliveryCounts, tally_hash
from tally.domain.ratecard import RateCardBook
from tally.domain.rating import (
    Deliveries,
    EventKey,
    Posting,
    Rated,
    Reject,
    SourceGrant,
    TotalKey,
)
from tally.domain.voids import Target, VoidRequest

K = TypeVar("K", bound=tuple[str, ...])
EVENT_COLUMNS = (
    "source",
    "id",
    "type",
    "org",
    "event_time",
    "period",
    "status",
    "meter",
    "feature",
    "quantity",
    "rate_card_version",
    "raw",
    "stream",
    "stream_id",
    "received_at",
    "entry_id",
)


async def rate_cards_loaded(conn: asyncpg.Connection) -> tuple[int, datetime | None]:
    """How many cards are loaded and when the last one was: changes when one is added."""
    row = await conn.fetchrow("SELECT count(*) AS n, max(loaded_at) AS last FROM rate_card")
    assert row is not None
    return row["n"], row["last"]


async def organizations(conn: asyncpg.Connection, names: Iterable[str]) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT name, currency FROM organization WHERE name = ANY($1::text[])", list(names)
    )
    return {row["name"]: row["currency"] for row in rows}


async def sources_loaded(conn: asyncpg.Connection) -> int:
    """How many source versions exist: the registry is append-only, so this grows with
    every change a consumer must pick up."""
    count: int = await conn.fetchval("SELECT count(*) FROM producer_source")
    return count


async def load_sources(conn: asyncpg.Connection) -> dict[str, SourceGrant]:
    """The newest version of each source, the removed ones left out."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (name) name, enabled, any_org, orgs FROM producer_source
            ORDER BY name, id DESC"""
    )
    return {
        row["name"]: SourceGrant(row["any_org"], frozenset(row["orgs"]))
        for row in rows
        if row["enabled"]
    }


async def stored_keys(
    conn: asyncpg.Connection, keys: Sequence[EventKey]
) -> dict[EventKey, tuple[bytes, str]]:
    """Raw bytes and delivery (``stream/stream id``) of the keys already stored."""
    if not keys:
        return {}
    rows = await conn.fetch(
        """SELECT e.source, e.id, e.raw, e.stream || '/' || e.stream_id AS delivery
             FROM unnest($1::text[], $2::text[]) AS k(source, id)
             JOIN usage_event e USING (source, id)""",
        [key[0] for key in keys],
        [key[1] for key in keys],
    )
    return {(r["source"], r["id"]): (bytes(r["raw"]), r["delivery"]) for r in rows}


async def add_ai_quantities(
    conn: asyncpg.Connection, batch: Mapping[TotalKey, Decimal]
) -> dict[TotalKey, Decimal]:
    """Add the batch's AI quantities to the running totals; returns the totals after.

    Rows are locked in key order so concurrent consumers cannot deadlock on them.
    """
    if not batch:
        return {}
    keys = sorted(batch)
    rows = await conn.fetch(
        """INSERT INTO meter_total AS t (org, period, feature, rate_card_version, quantity)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[])
           ON CONFLICT (org, period, feature, rate_card_version)
           DO UPDATE SET quantity = t.quantity + excluded.quantity
           RETURNING org, period, feature, rate_card_version, quantity""",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [k[3] for k in keys],
        [batch[k] for k in keys],
    )
    return {
        (r["org"], r["period"], r["feature"], r["rate_card_version"]): r["quantity"] for r in rows
    }


async def write_events(
    conn: asyncpg.Connection,
    stream: str,
    received_at: datetime,
    deliveries: Deliveries,
    postings: Sequence[Posting],
    entry_ids: Mapping[str, int],
) -> DeliveryCounts:
    """COPY the new events (each linked to its entry), then record duplicates and conflicts;
    returns how many rows of each went in (a redelivered duplicate or conflict is kept once).

    A key inserted meanwhile by another consumer makes the COPY fail with a unique
    violation; the caller rolls back and retries, and then sees it as stored. Rows go in
    key order, so two consumers inserting overlapping keys wait on each other instead of
    deadlocking.
    """
    carrier = {event.key: entry_ids[p.entry.key] for p in postings for event in p.events}
    if deliveries.new:
        await conn.copy_records_to_table(
            "usage_event",
            columns=EVENT_COLUMNS,
            records=[
                _event_record(e, stream, received_at, carrier.get(e.key))
                for e in sorted(deliveries.new, key=lambda event: event.key)
            ],
        )
    licenses = [e for e in deliveries.new if e.license is not None]
    if licenses:
        await conn.copy_records_to_table(
            "license_usage",
            columns=("source", "id", "org", "period", "day", "license", "model", "users", "hours"),
            records=[
                (
                    e.source,
                    e.id,
                    e.org,
                    e.period,
                    e.day,
                    e.license.license,
                    e.license.model,
                    e.license.users,
                    e.license.hours,
                )
                for e in licenses
                if e.license is not None
            ],
        )
    duplicates = conflicts = 0
    if deliveries.duplicates:
        duplicates = _inserted(
            await conn.execute(
                """INSERT INTO duplicate_delivery (stream, stream_id, source, id, received_at)
               SELECT $1, * , $5 FROM unnest($2::text[], $3::text[], $4::text[])
               ON CONFLICT DO NOTHING""",
                stream,
                [e.stream_id for e in deliveries.duplicates],
                [e.source for e in deliveries.duplicates],
                [e.id for e in deliveries.duplicates],
                received_at,
            )
        )
    if deliveries.conflicts:
        conflicts = _inserted(
            await conn.execute(
                """INSERT INTO event_conflict (stream, stream_id, source, id, raw, received_at)
               SELECT $1, *, $6 FROM unnest($2::text[], $3::text[], $4::text[], $5::bytea[])
               ON CONFLICT DO NOTHING""",
                stream,
                [e.stream_id for e in deliveries.conflicts],
                [e.source for e in deliveries.conflicts],
                [e.id for e in deliveries.conflicts],
                [e.raw for e in deliveries.conflicts],
                received_at,
            )
        )
    return DeliveryCounts(len(deliveries.new), duplicates, conflicts)


def _inserted(status: str) -> int:
    """Rows an ``INSERT 0 n`` status reports."""
    return int(status.rsplit(" ", 1)[1])


def _event_record(
    event: Rated, stream: str, received_at: datetime, entry_id: int | None
) -> tuple[object, ...]:
    return (
        event.source,
        event.id,
        event.type,
        event.org,
        event.time,
        event.period,
        event.status,
        event.meter,
        event.feature,
        event.quantity,
        event.rate_card_version,
        event.raw,
        stream,
        event.stream_id,
        received_at,
        entry_id,
    )


async def write_rejects(
    conn: asyncpg.Connection, stream: str, received_at: datetime, rejects: Sequence[Reject]
) -> int:
    """Dead letters; a redelivered entry (same stream id) is kept once. Returns how many
    went in."""
    if not rejects:
        return 0
    status = await conn.execute(
        """INSERT INTO dead_letter (stream, stream_id, raw, reason, code, source, event_id,
                                    original_length, original_sha256, received_at)
           SELECT $1, *, $10 FROM unnest($2::text[], $3::bytea[], $4::text[], $5::text[],
                                         $6::text[], $7::text[], $8::bigint[], $9::text[])
           ON CONFLICT (stream, stream_id) DO NOTHING""",
        stream,
        [r.stream_id for r in rejects],
        [r.raw for r in rejects],
        [r.reason for r in rejects],
        [r.code for r in rejects],
        [r.source for r in rejects],
        [r.event_id for r in rejects],
        [r.original.length if r.original else None for r in rejects],
        [r.original.sha256 if r.original else None for r in rejects],
        received_at,
    )
    return _inserted(status)


async def record_replays(
    conn: asyncpg.Connection,
    replaying: Mapping[str, int],
    outcomes: Mapping[str, str],
    at: datetime,
) -> int:
    """A dead letter is closed once its event is stored; a new reject leaves it open.

    ``replaying`` maps stream ids to dead-letter ids; only those this commit decided
    (present in ``outcomes``) are recorded. Returns how many letters were closed.
    """
    decided = [sid for sid in replaying if sid in outcomes]
    closed: int = await conn.fetchval(
        """WITH recorded AS (
               UPDATE dead_letter d
                  SET replayed_at = CASE WHEN u.done THEN $3::timestamptz END,
                      replay_outcome = u.outcome
                 FROM unnest($1::bigint[], $2::text[], $4::bool[]) AS u(id, outcome, done)
                WHERE d.id = u.id AND d.replayed_at IS NULL
            RETURNING d.replayed_at)
           SELECT count(replayed_at) FROM recorded""",
        [replaying[sid] for sid in decided],
        [outcomes[sid] for sid in decided],
        at,
        [not outcomes[sid].startswith("rejected") for sid in decided],
    )
    return closed


async def record_tally(
    conn: asyncpg.Connection, stream: str, at: datetime, counts: DeliveryCounts
) -> None:
    """Append the batch's counts to a free lane of the delivery-tally chain (any lane:
    concurrent consumers do not queue on one head); the lane head moves in the same
    statement."""
    lane, seq, head = await take_lane(conn, "delivery_lane")
    seq += 1
    digest = tally_hash(head, lane, seq, stream, at, counts)
    await conn.execute(
        """WITH head AS (UPDATE delivery_lane SET seq = $2, head_hash = $11 WHERE lane = $1)
           INSERT INTO delivery_tally (lane, seq, stream, events, duplicates, conflicts,
                                       dead_letters, replayed, recorded_at, prev_hash, hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
        lane,
        seq,
        stream,
        counts.events,
        counts.duplicates,
        counts.conflicts,
        counts.dead_letters,
        counts.replayed,
        at,
        head,
        digest,
    )


async def add_rollups(conn: asyncpg.Connection, new_events: Sequence[Rated]) -> None:
    """The batch's new events into the daily rollups (``rollups.add``), in its transaction."""
    await rollups.add(conn, new_events)


async def compact_rollups(conn: asyncpg.Connection) -> int:
    """Fold the rollups' deltas into the daily rows (``rollups.compact``)."""
    return await rollups.compact(conn)


async def record_alert_crossings(
    conn: asyncpg.Connection, added: Mapping[UsageKey, Decimal], book: RateCardBook, now: datetime
) -> int:
    """Threshold alerts the batch's usage crosses (``alerts.record_crossings``), in its
    transaction: recorded once per organization, period, meter and threshold."""
    return await alerts.record_crossings(conn, added, book, now)


async def void_targets(
    conn: asyncpg.Connection, keys: Sequence[EventKey]
) -> dict[EventKey, Target]:
    """The stored events these voids name, each with whether it is voided already."""
    if not keys:
        return {}
    rows = await conn.fetch(
        """SELECT e.source, e.id, e.status, e.org, e.period, e.raw, e.stream_id,
                  e.received_at, o.currency, e.rate_card_version,
                  x.source IS NOT NULL AS voided
             FROM unnest($1::text[], $2::text[]) AS k(source, id)
             JOIN usage_event e USING (source, id)
             JOIN organization o ON o.name = e.org
             LEFT JOIN event_void x USING (source, id)""",
        [key[0] for key in keys],
        [key[1] for key in keys],
    )
    return {
        (r["source"], r["id"]): Target(
            (r["source"], r["id"]),
            r["status"],
            r["org"],
            r["period"],
            r["voided"],
            bytes(r["raw"]),
            r["stream_id"],
            r["received_at"],
            r["currency"],
            r["rate_card_version"],
        )
        for r in rows
    }


async def write_voids(
    conn: asyncpg.Connection,
    voids: Sequence[tuple[VoidRequest, Rated]],
    entry_ids: Mapping[EventKey, int],
    at: datetime,
) -> None:
    """Record each void with its reversing entry (the database refuses a second void)."""
    await conn.execute(
        """INSERT INTO event_void (source, id, org, period, entry_id, reason, requested_by,
                                   void_source, void_id, voided_at)
           SELECT *, $10 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                     $5::bigint[], $6::text[], $7::text[], $8::text[],
                                     $9::text[])""",
        [event.source for _, event in voids],
        [event.id for _, event in voids],
        [event.org for _, event in voids],
        [event.period for _, event in voids],
        [entry_ids[event.key] for _, event in voids],
        [request.reason for request, _ in voids],
        [request.requested_by for request, _ in voids],
        [request.asked_by[0] if request.asked_by else None for request, _ in voids],
        [request.asked_by[1] if request.asked_by else None for request, _ in voids],
        at,
    )


async def invoice_of(conn: asyncpg.Connection, org: str, period: str) -> int | None:
    """The organization's invoice for the period, if it has one."""
    number: int | None = await conn.fetchval(
        "SELECT number FROM invoice WHERE org = $1 AND period = $2", org, period
    )
    return number


async def take_back_ai_quantities(
    conn: asyncpg.Connection, taken: Mapping[TotalKey, Decimal]
) -> None:
    """Subtract voided AI quantities (``taken``: negative) from the running totals, which
    ``ai_totals`` locked earlier in this transaction. Call it after ``write_voids``: the
    database lets a total shrink only in the transaction that records the void."""
    key = ("org", "period", "feature", "rate_card_version")
    await _take_back(conn, "meter_total", key, "quantity", taken, locked=True)


async def ai_totals(conn: asyncpg.Connection, keys: Sequence[TotalKey]) -> dict[TotalKey, Decimal]:
    """The running AI totals, locked (in key order) until the transaction ends."""
    rows = await conn.fetch(
        """SELECT t.org, t.period, t.feature, t.rate_card_version, t.quantity FROM meter_total t
             JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[])
                  AS k(org, period, feature, rate_card_version)
               USING (org, period, feature, rate_card_version)
            ORDER BY 1, 2, 3, 4 FOR UPDATE OF t""",
        *([k[n] for k in sorted(keys)] for n in range(4)),
    )
    return {
        (r["org"], r["period"], r["feature"], r["rate_card_version"]): r["quantity"] for r in rows
    }


async def take_back_usage(conn: asyncpg.Connection, taken: Mapping[UsageKey, Decimal]) -> None:
    """Subtract voided usage (negative) from the usage totals the alerts read."""
    await _take_back(conn, "usage_total", ("org", "period", "meter"), "used", taken)


async def _take_back(
    conn: asyncpg.Connection,
    table: str,
    key: tuple[str, ...],
    column: str,
    deltas: Mapping[K, Decimal],
    locked: bool = False,
) -> None:
    """Add negative ``deltas`` to existing rows (an upsert's insert half would check a
    negative row against the table's CHECK), locked first in key order, as the upserts
    lock them (unless the caller ``locked`` them already)."""
    if not deltas:
        return
    keys = sorted(deltas)
    names = ", ".join(key)
    arrays = ", ".join(f"${n + 1}::text[]" for n in range(len(key)))
    columns = [[k[n] for k in keys] for n in range(len(key))]
    if not locked:
        await conn.execute(
            f"""SELECT 1 FROM {table} WHERE ({names}) IN (SELECT * FROM unnest({arrays}))
                 ORDER BY {names} FOR UPDATE""",
            *columns,
        )
    status = await conn.execute(
        f"""UPDATE {table} t SET {column} = t.{column} + d.delta
              FROM unnest({arrays}, ${len(key) + 1}::numeric[]) AS d({names}, delta)
             WHERE ({", ".join(f"t.{k}" for k in key)}) = ({", ".join(f"d.{k}" for k in key)})""",
        *columns,
        [deltas[k] for k in keys],
    )
    if int(status.rsplit(" ", 1)[1]) != len(keys):
        raise ValueError(f"{table}: a voided event's running total is missing")
