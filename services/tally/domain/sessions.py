"""The pages' sessions and their forms' CSRF tokens.

A session id is 256 random bits: the browser's cookie holds it, the database only its
SHA-256 (a copy of the table opens no session). A form's CSRF token is an HMAC of the
cookie it is posted with (the session's, or before sign-in a random one of its own), so a
page of another origin, which can read neither cookie, cannot make one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

SESSION_BYTES = 32
CSRF_CONTEXT = b"tally-ui-csrf"
TOKEN = re.compile(r"[0-9a-f]{64}", re.ASCII)  # what csrf_token makes


def new_session_id() -> str:
    return secrets.token_urlsafe(SESSION_BYTES)


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def csrf_token(cookie: str) -> str:
    """The token a form posted with ``cookie`` must carry."""
    return hmac.new(cookie.encode(), CSRF_CONTEXT, hashlib.sha256).hexdigest()


def csrf_matches(cookie: str | None, token: str | None) -> bool:
    """``token`` is the one of ``cookie``: anything but 64 hex digits is refused first, and
    bytes are compared (``compare_digest`` raises on a str that is not ASCII)."""
    if not cookie or not token or not TOKEN.fullmatch(token):
        return False
    return hmac.compare_digest(csrf_token(cookie).encode(), token.encode())
