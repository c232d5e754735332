"""``tally migrate``: schema, rate cards, the consumer group on every shard of the stream.
Idempotent and safe to run at once."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.ports.schema import Schema
from tally.adapters.ports.streams import Streams
from tally.config import ServiceUrls, Settings


async def migrate(
    settings: Settings, urls: ServiceUrls, schema: Schema, streams: Streams, owner: AsyncEngine
) -> list[str]:
    """Runs as the login role (the ``owner`` engine), never as ``TALLY_DATABASE_ROLE``."""
    done = []
    await schema.upgrade(urls.database)
    done.append("schema at the newest revision")
    passwords = {
        schema.WRITER: settings.writer_password,
        schema.READER: settings.reader_password,
    }
    await schema.grant(
        urls.database,
        {role: secret.get_secret_value() if secret else None for role, secret in passwords.items()},
    )
    done.append(f"roles {schema.WRITER} and {schema.READER} granted their privileges")
    loaded = await schema.load_rate_cards(owner)
    done.append(f"rate cards loaded: {', '.join(loaded)}" if loaded else "rate cards up to date")
    client = streams.connect(urls.redis)
    try:
        for key in settings.stream_keys:
            created = await streams.ensure_group(client, key, settings.group)
            done.append(
                f"consumer group {settings.group!r} on {key!r} "
                + ("created from id 0" if created else "already there")
            )
    finally:
        await client.aclose()
    return done
