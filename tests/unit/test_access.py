"""API keys and roles, pure: the presets, the secret's shape, who a secret admits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tally.domain.access import (
    PRESETS,
    KeyRefused,
    Role,
    Scope,
    StoredKey,
    hash_secret,
    key_id_of,
    new_key,
)

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def test_the_role_presets() -> None:
    assert PRESETS[Role.auditor].scopes == {s for s in Scope if s != Scope.events_write}
    assert PRESETS[Role.producer].scopes == {Scope.events_write}  # sends, reads nothing
    assert PRESETS[Role.finance].scopes == {Scope.invoices_read, Scope.usage_read, Scope.dlq_read}
    assert PRESETS[Role.org_viewer].scopes == {Scope.invoices_read, Scope.usage_read}
    assert [role for role, preset in PRESETS.items() if preset.one_org] == [Role.org_viewer]


def test_an_org_viewer_needs_one_org_and_the_others_none() -> None:
    with pytest.raises(KeyRefused, match="--org"):
        new_key(Role.org_viewer, None)
    with pytest.raises(KeyRefused, match="not bound to an organization"):
        new_key(Role.auditor, "acme")
    assert new_key(Role.org_viewer, "acme").org == "acme"


def test_a_producer_needs_one_source_and_the_others_none() -> None:
    with pytest.raises(KeyRefused, match="--source"):
        new_key(Role.producer, None)
    with pytest.raises(KeyRefused, match="--source does not apply"):
        new_key(Role.finance, None, "crm-sync")
    with pytest.raises(KeyRefused, match="--org does not apply"):
        new_key(Role.producer, "acme", "crm-sync")
    assert new_key(Role.producer, None, "crm-sync").source == "crm-sync"


def stored(secret_hash: str, **dates: datetime | None) -> StoredKey:
    return StoredKey("0" * 12, secret_hash, frozenset(Scope), None, **dates)


@given(role=st.sampled_from([Role.auditor, Role.finance]))
def test_a_new_secret_finds_its_key_and_only_it_admits(role: Role) -> None:
    key = new_key(role, None)
    assert key.secret.startswith("tally_") and key_id_of(key.secret) == key.id
    assert len(key.secret) == len("tally_") + 12 + 1 + 43  # 256 random bits, base64url
    assert key.secret_hash == hash_secret(key.secret) and key.secret not in key.secret_hash
    live = stored(key.secret_hash, expires_at=None, revoked_at=None)
    assert live.admits(key.secret, NOW)
    assert not live.admits(key.secret[:-1] + ("A" if key.secret[-1] != "A" else "B"), NOW)
    assert not stored(key.secret_hash, expires_at=NOW, revoked_at=None).admits(key.secret, NOW)
    later = NOW + timedelta(days=1)
    assert stored(key.secret_hash, expires_at=later, revoked_at=None).admits(key.secret, NOW)
    assert not stored(key.secret_hash, expires_at=None, revoked_at=NOW).admits(key.secret, NOW)


@given(st.text())
def test_anything_but_a_tally_secret_has_no_key_id(text: str) -> None:
    if key_id_of(text) is not None:
        assert text.startswith("tally_") and len(text) == 62
