"""Issuing the HTTP API's keys: the secret exists only in the answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tally.adapters.ports.api_keys import ApiKeyStore
from tally.domain.access import NewKey, Role, new_key


async def create_key(
    store: ApiKeyStore,
    role: Role,
    org: str | None,
    name: str | None,
    lifetime: timedelta | None,
    source: str | None = None,
) -> tuple[NewKey, datetime | None]:
    """A new key of ``role`` (bound to ``org`` for org_viewer, to ``source`` for producer),
    stored by its hash; returns it with its secret (shown once) and its expiry."""
    key = new_key(role, org, source)
    expires_at = datetime.now(UTC) + lifetime if lifetime else None
    await store.add(key, name or f"{role}-{key.id}", expires_at)
    return key, expires_at
