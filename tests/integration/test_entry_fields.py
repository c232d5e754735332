"""A stream entry is exactly one field, ``event``: a repeated field or a field beside it is
refused with its own code, kept byte-exact, and replayed as the very same entry."""

from __future__ import annotations

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from support.entry_shapes import SHAPES, Pairs
from support.ledger_support import api, balance_map, dead_letters_of, read
from tally.adapters import redis_streams
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import org_balances
from tally.config import Settings
from tally.domain.rating import stream_fields
from tally.service_layer.metering import MeteringService, replay_dead_letters


async def raw_entries(client: aioredis.Redis, key: str) -> list[tuple[str, Pairs]]:
    """The stream as Redis holds it: each entry's fields as pairs, repeats included (redis-py
    would fold them into a dict, keeping the last)."""
    reply = await redis_streams.raw_command(client, "XRANGE", key, "-", "+")
    return [
        (entry_id.decode(), list(zip(fields[::2], fields[1::2], strict=True)))
        for entry_id, fields in reply
    ]


async def test_ambiguous_entries_xadded_to_redis_are_dead_lettered_and_replay_unchanged(
    engine: AsyncEngine, stream: aioredis.Redis, settings: Settings, service: MeteringService
) -> None:
    for pairs, _, _ in SHAPES.values():
        await stream.execute_command(
            "XADD", settings.stream, "*", *(part for pair in pairs for part in pair)
        )
    await stream.execute_command("XADD", settings.stream, "*", "event", api("fine", count=7))
    entries = await raw_entries(stream, settings.stream)
    assert [pairs for _, pairs in entries[:-1]] == [pairs for pairs, _, _ in SHAPES.values()]

    report = await service.process(settings.stream, entries)
    assert report.counts["metered"] == 1
    letters = await dead_letters_of(engine)
    assert [letter.code for letter in letters] == [code for _, code, _ in SHAPES.values()]
    for letter, (_, _, reason) in zip(letters, SHAPES.values(), strict=True):
        assert reason in letter.reason
    balances = balance_map(await read(engine, org_balances.balances, "acme", "2026-10"))
    assert balances["org/acme/2026-10/api_request/usage"] == 7  # neither 1 nor 500 of r1

    async with raw_connection(engine) as conn:
        kept = await conn.fetch("SELECT raw, code FROM dead_letter ORDER BY id")
    assert [stream_fields(bytes(row["raw"]), row["code"]) for row in kept] == [
        pairs for _, pairs in entries[:-1]
    ]
    replayed = await replay_dead_letters(service, None, 100)
    assert sorted(replayed.values()) == sorted(f"rejected: {letter.reason}" for letter in letters)
