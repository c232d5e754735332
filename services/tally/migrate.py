"""``tally migrate``: schema, rate cards, consumer group. Idempotent and safe to run at once."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters import redis_streams
from tally.adapters.postgres import schema
from tally.config import Settings
from tally.runtime import ServiceUrls


async def migrate(settings: Settings, urls: ServiceUrls, engine: AsyncEngine) -> list[str]:
    done = []
    await schema.upgrade(urls.database)
    done.append("schema at the newest revision")
    loaded = await schema.load_rate_cards(engine)
    done.append(f"rate cards loaded: {', '.join(loaded)}" if loaded else "rate cards up to date")
    client = redis_streams.connect(urls.redis)
    try:
        created = await redis_streams.ensure_group(client, settings.stream, settings.group)
    finally:
        await client.aclose()
    done.append(
        f"consumer group {settings.group!r} on {settings.stream!r} "
        + ("created from id 0" if created else "already there")
    )
    return done
