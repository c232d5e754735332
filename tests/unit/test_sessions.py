"""A form's CSRF token: only the 64 hex digits of its cookie's HMAC match; anything else,
non-ASCII included, is simply refused (it was a TypeError, a 500)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tally.domain.access import Role, StoredKey, new_key
from tally.domain.sessions import csrf_matches, csrf_token


def test_the_token_of_the_cookie_matches() -> None:
    assert csrf_matches("cookie", csrf_token("cookie"))
    assert not csrf_matches("cookie", csrf_token("other"))
    assert not csrf_matches(None, csrf_token("cookie")) and not csrf_matches("cookie", None)


@pytest.mark.parametrize(
    "token",
    ["", "é" * 64, "\ud800" * 64, "\u0660" * 64, "0" * 63, "0" * 65, "A" * 64, "\x00" * 64],
)
def test_anything_else_is_refused_without_an_error(token: str) -> None:
    assert not csrf_matches("cookie", token)
    assert not csrf_matches("cookie", csrf_token("cookie").upper())


def test_a_key_check_takes_any_secret() -> None:
    key = new_key(Role.auditor, None)
    stored = StoredKey(key.id, key.secret_hash, key.scopes, None, None, None)
    now = datetime.now(UTC)
    assert stored.admits(key.secret, now)
    assert not stored.admits("é" + key.secret[1:], now)
