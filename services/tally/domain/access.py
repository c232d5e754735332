"""Who may do what through the HTTP API: scopes, the role presets, and API key secrets.

Every role reads but ``producer``, which may only send usage events (``POST /v1/events``)
and only as the one registered source its key names.

A secret is ``tally_<key id>_<256 random bits>``: the prefix makes a leaked key
recognizable (secret scanners), the key id finds its row without scanning, and only the
SHA-256 of the whole secret is stored, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tally.domain.rating import SourceGrant

PREFIX = "tally_"
KEY_ID_BYTES = 6  # 12 hex digits: a lookup id, not a secret
SECRET_BYTES = 32  # 256 random bits
SECRET_PATTERN = re.compile(r"tally_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


class Scope(StrEnum):
    ledger_read = "ledger:read"
    invoices_read = "invoices:read"
    usage_read = "usage:read"
    dlq_read = "dlq:read"
    events_write = "events:write"


class Role(StrEnum):
    auditor = "auditor"
    finance = "finance"
    org_viewer = "org_viewer"
    producer = "producer"


@dataclass(frozen=True)
class Preset:
    scopes: frozenset[Scope]
    one_org: bool  # bound to exactly one organization (else: all organizations)
    one_source: bool = False  # sends events as exactly one registered source


READ_SCOPES = frozenset(scope for scope in Scope if scope.value.endswith(":read"))
PRESETS: dict[Role, Preset] = {
    Role.auditor: Preset(READ_SCOPES, one_org=False),
    Role.finance: Preset(
        frozenset({Scope.invoices_read, Scope.usage_read, Scope.dlq_read}), one_org=False
    ),
    Role.org_viewer: Preset(frozenset({Scope.invoices_read, Scope.usage_read}), one_org=True),
    Role.producer: Preset(frozenset({Scope.events_write}), one_org=False, one_source=True),
}


class KeyRefused(ValueError):
    """A key that cannot be made as asked (e.g. an org_viewer without its organization)."""


@dataclass(frozen=True)
class NewKey:
    id: str
    secret: str  # shown once, never stored
    secret_hash: str
    role: Role
    scopes: frozenset[Scope]
    org: str | None
    source: str | None = None


def new_key(role: Role, org: str | None, source: str | None = None) -> NewKey:
    """A fresh key of ``role``: an org_viewer needs its one organization, a producer its one
    source; others take neither."""
    preset = PRESETS[role]
    if preset.one_org and not org:
        raise KeyRefused(f"a {role} key is bound to one organization: give --org")
    if not preset.one_org and org:
        raise KeyRefused(f"a {role} key is not bound to an organization: --org does not apply")
    if preset.one_source and not source:
        raise KeyRefused(f"a {role} key sends events as one registered source: give --source")
    if not preset.one_source and source:
        raise KeyRefused(f"a {role} key sends no events: --source does not apply")
    key_id = secrets.token_hex(KEY_ID_BYTES)
    secret = f"{PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return NewKey(key_id, secret, hash_secret(secret), role, preset.scopes, org, source)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id_of(secret: str) -> str | None:
    """The lookup id inside a well-formed secret; None for anything else."""
    found = SECRET_PATTERN.fullmatch(secret)
    return found[1] if found else None


@dataclass(frozen=True)
class StoredKey:
    id: str
    secret_hash: str
    scopes: frozenset[Scope]
    org: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    source: str | None = None  # a producer key's one source
    grant: SourceGrant | None = None  # what that source may bill now; None: removed

    def admits(self, secret: str, now: datetime) -> bool:
        """The secret is this key's, and the key is neither expired nor revoked."""
        same = hmac.compare_digest(hash_secret(secret).encode(), self.secret_hash.encode())
        live = self.revoked_at is None and (self.expires_at is None or now < self.expires_at)
        return same and live
