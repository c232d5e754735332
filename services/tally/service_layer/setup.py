"""``tally migrate``: schema, rate cards, consumer group. Idempotent and safe to run at once."""

from __future__ import annotations

from tally.adapters import redis_streams
from tally.adapters.postgres import privileges, schema
from tally.adapters.postgres.connection import make_engine
from tally.config import ServiceUrls, Settings


async def migrate(settings: Settings, urls: ServiceUrls) -> list[str]:
    """Runs as the login role (the owner), never as ``TALLY_DATABASE_ROLE``."""
    done = []
    await schema.upgrade(urls.database)
    done.append("schema at the newest revision")
    passwords = {
        privileges.WRITER: settings.writer_password,
        privileges.READER: settings.reader_password,
    }
    await schema.grant(
        urls.database,
        {role: secret.get_secret_value() if secret else None for role, secret in passwords.items()},
    )
    done.append(f"roles {privileges.WRITER} and {privileges.READER} granted their privileges")
    engine = make_engine(urls.database, owner=True)
    try:
        loaded = await schema.load_rate_cards(engine)
    finally:
        await engine.dispose()
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
