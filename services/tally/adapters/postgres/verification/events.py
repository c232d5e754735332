"""Stored events against the ledger and against their own raw bytes."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from tally.adapters.postgres import stream_records
from tally.adapters.postgres.verification.registry import Context, check
from tally.domain.ledger import AI_TOKEN, API_REQUEST
from tally.domain.rating import AS_STORED, EVENT_FIELD_BYTES, Rated, rate


@check(
    "events",
    "each metered event is carried by a usage entry of its organization, period and rate card, "
    "each usage "
    "entry carries events, each usage reversal one voided event, and an entry's requests are "
    "its events' counts (a reversal's, minus its event's)",
    "unlinked event",
    "empty usage entry",
    "usage mismatch",
)
async def events(ctx: Context) -> None:
    conn, result = ctx.conn, ctx.result
    result.events = await conn.fetchval("SELECT count(*) FROM usage_event")
    for row in await conn.fetch(
        """SELECT v.source, v.id, v.entry_id FROM usage_event v
             LEFT JOIN journal_entry e ON e.id = v.entry_id
            WHERE v.status = 'metered' AND (e.id IS NULL OR e.kind <> 'usage'
                  OR e.org <> v.org OR e.period <> v.period
                  OR e.rate_card_version IS DISTINCT FROM v.rate_card_version)"""
    ):
        result.add(
            "unlinked event",
            f"metered event ({row['source']}, {row['id']}) has no matching usage entry "
            f"(entry_id {row['entry_id']})",
        )
    for row in await conn.fetch(
        """SELECT e.id FROM journal_entry e
            WHERE e.kind = 'usage'
              AND NOT EXISTS (SELECT 1 FROM usage_event v WHERE v.entry_id = e.id)"""
    ):
        result.add("empty usage entry", f"usage entry {row['id']} carries no event")
    for row in await conn.fetch(
        """SELECT e.id FROM journal_entry e
            WHERE e.kind = 'usage_reversal'
              AND NOT EXISTS (SELECT 1 FROM event_void x WHERE x.entry_id = e.id)"""
    ):
        result.add("empty usage entry", f"usage reversal {row['id']} voids no event")
    for row in await conn.fetch(
        f"""WITH carried AS (SELECT entry_id, sum(q) AS q FROM (
                                SELECT entry_id, quantity AS q FROM usage_event
                                 WHERE meter = '{API_REQUEST}'
                                UNION ALL
                                SELECT x.entry_id, -v.quantity FROM event_void x
                                  JOIN usage_event v USING (source, id)
                                 WHERE v.meter = '{API_REQUEST}') AS c GROUP BY entry_id),
                 posted AS (SELECT l.entry_id, sum(l.amount) AS q FROM entry_line l
                              JOIN account a ON a.id = l.account_id
                             WHERE a.unit = '{API_REQUEST}' AND a.kind = 'usage'
                             GROUP BY l.entry_id)
            SELECT c.entry_id, c.q AS carried, p.q AS posted
              FROM carried c LEFT JOIN posted p USING (entry_id)
             WHERE p.q IS DISTINCT FROM c.q"""
    ):
        result.add(
            "usage mismatch",
            f"entry {row['entry_id']} posts {row['posted']} requests, its events count "
            f"{row['carried']}",
        )


@check(
    "ai-tokens",
    "each feature's AI tokens are the rate card's conversion of its events' quantities, the "
    "voided ones left out",
    "token mismatch",
)
async def ai_tokens(ctx: Context) -> None:
    """Tokens per feature equal the conversion of the events' total quantity."""
    conn, result = ctx.conn, ctx.result
    book = await ctx.rate_cards()
    cards = {card.version: card for card in book.cards}
    used: dict[tuple[str, str, str, str], Decimal] = {}
    for row in await conn.fetch(
        f"""SELECT org, period, feature, rate_card_version, sum(quantity) AS q FROM usage_event v
             WHERE meter = '{AI_TOKEN}' AND NOT EXISTS (SELECT 1 FROM event_void x
                                                         WHERE (x.source, x.id) = (v.source, v.id))
             GROUP BY 1, 2, 3, 4"""
    ):
        used[(row["org"], row["period"], row["feature"], row["rate_card_version"])] = row["q"]
    tokens: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for key, quantity in used.items():
        card = cards.get(key[3])
        if card is None:  # a version no card has: named, never a crash of verify
            result.add(
                "token mismatch",
                f"{key[0]} {key[1]} {key[2]}: events of rate card {key[3]!r}, which is not "
                "loaded, cannot be converted",
            )
            continue
        tokens[key[:3]] += card.tokens(key[2], quantity)
    posted = {
        (row["owner"], row["period"], row["feature"]): row["amount"]
        for row in await conn.fetch(
            f"""SELECT a.owner, a.period, a.feature, sum(l.amount) AS amount FROM entry_line l
                  JOIN account a ON a.id = l.account_id
                 WHERE a.unit = '{AI_TOKEN}' AND a.kind = 'usage' GROUP BY 1, 2, 3"""
        )
    }
    for where in sorted(set(tokens) | set(posted)):
        if tokens.get(where, Decimal(0)) != posted.get(where, Decimal(0)):
            result.add(
                "token mismatch",
                f"{where[0]} {where[1]} {where[2]}: ledger has {posted.get(where, 0)} tokens, "
                f"events convert to {tokens.get(where, 0)}",
            )


STORED_AS_RATED = (
    "type",
    "org",
    "period",
    "status",
    "meter",
    "feature",
    "quantity",
    "rate_card_version",
)


@check(
    "event-bytes",
    "every stored event (metered, non-billable or license usage), rated again from its raw "
    "bytes, gives the columns stored with it",
    "event bytes",
)
async def event_bytes(ctx: Context) -> None:
    """Every stored event, rated again from its raw bytes, gives the columns stored with it
    (and its license row): a column changed behind the application's back shows here.

    The producer registry is not applied: it says who may bill from now on, not who could
    when the event was metered (perhaps with the check off). The stored key, source
    included, is still checked against the raw bytes below."""
    conn, result = ctx.conn, ctx.result
    # each event by the card that metered it: a card loaded since, in effect earlier, is
    # not how it was rated (its entry's version, hashed, is checked by "events")
    cards = await ctx.rate_cards()
    orgs = {row["name"]: row["currency"] for row in await conn.fetch("SELECT * FROM organization")}
    query = """SELECT v.*, l.license, l.model, l.users, l.hours, l.day
                 FROM usage_event v LEFT JOIN license_usage l USING (source, id)"""
    async for row in conn.cursor(query, prefetch=5000):
        key = f"({row['source']}, {row['id']})"
        book = cards.as_metered(row["rate_card_version"])
        if book is None:
            result.add(
                "event bytes",
                f"{key} was metered by rate card {row['rate_card_version']!r}, which is not loaded",
            )
            continue
        rated = rate(
            row["stream_id"],
            {EVENT_FIELD_BYTES: bytes(row["raw"])},
            orgs,
            book,
            AS_STORED,
            row["received_at"],
        )
        if not isinstance(rated, Rated):
            result.add("event bytes", f"{key} no longer rates: {rated.reason}")
            continue
        differs = [name for name in STORED_AS_RATED if getattr(rated, name) != row[name]]
        if (rated.source, rated.id) != (row["source"], row["id"]):
            differs.append("key")
        if rated.time != row["event_time"]:
            differs.append("event_time")
        if rated.license is not None and (
            rated.license.license,
            rated.license.model,
            rated.license.users,
            rated.license.hours,
            rated.day,
        ) != (row["license"], row["model"], row["users"], row["hours"], row["day"]):
            differs.append("license usage")
        if rated.license is None and row["license"] is not None:
            differs.append("license usage")
        if differs:
            result.add(
                "event bytes", f"{key}: stored {', '.join(differs)} differ from its raw bytes"
            )


@check(
    "stream-incidents",
    "no stream lost entries before the consumer group read them",
    "stream incident",
)
async def stream_incidents(ctx: Context) -> None:
    """Entries removed from a stream before they were read never reached the ledger."""
    conn, result = ctx.conn, ctx.result
    for row in await stream_records.incidents(conn):
        result.add(
            "stream incident",
            f"{row['lost']} entries of stream {row['stream']} were removed (trimmed) before "
            f"group {row['group_name']} read them: ids after {row['after_id']} and before "
            f"{row['before_id']}, detected {row['detected_at'].isoformat()}",
        )
