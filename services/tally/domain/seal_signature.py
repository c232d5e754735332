"""What a month seal's signature signs, and checking one. Pure.

A seal is signed with Ed25519 (RFC 8032) over a canonical byte string, so a customer
checks it with any Ed25519 library and the seal's four fields as the invoice prints them:
the UTF-8 bytes of

    tally-seal-v1\\n<period>\\n<sequence>\\n<root>\\n<entries>\\n

``period`` as ``YYYY-MM``, ``sequence`` and ``entries`` in decimal without leading zeros,
``root`` as 64 lower-case hex digits; every field ends with one line feed (0x0A), nothing
else is signed. The version prefix keeps these bytes from ever passing for another kind of
message signed with the same key.

A key's id is the first 16 hex digits of the SHA-256 of its raw 32-byte public key: anyone
holding the key recomputes it. Keys are published with their validity at
``/.well-known/tally-seal-keys.json``.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ALGORITHM = "Ed25519"
VERSION = "tally-seal-v1"
CANONICAL = VERSION + "\\n<period>\\n<sequence>\\n<root>\\n<entries>\\n"  # as documented
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
KEYS_PATH = "/.well-known/tally-seal-keys.json"


def signed_bytes(period: str, sequence: int, root: str, entries: int) -> bytes:
    """The exact bytes a seal's signature signs (``root`` in hex)."""
    return f"{VERSION}\n{period}\n{sequence}\n{root.lower()}\n{entries}\n".encode()


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """That ``signature`` is ``public_key``'s Ed25519 signature of ``message``."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True
