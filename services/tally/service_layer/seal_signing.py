"""Signing month seals with Ed25519: a new key pair (its public key published, the one
before it retired), and a signature for every seal not signed yet.

The private key lives in a file or a deployment secret and only ever passes through here
in memory: the store gets public keys and signatures, never the private key. What is
signed is ``tally.domain.seal_signature.signed_bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tally.adapters.ports.seal_signing import SealSigningStore, Unsigned
from tally.domain import seal_signature


class SealKeyError(ValueError):
    """A seal key that cannot be used as asked: the message says why and what to do."""


@dataclass(frozen=True)
class KeyPair:
    key_id: str
    public_key: bytes  # raw, 32 bytes
    private_pem: bytes  # PKCS#8 PEM, unencrypted: for the key file or the secret only


def new_key_pair() -> KeyPair:
    private = Ed25519PrivateKey.generate()
    public = public_bytes(private)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return KeyPair(seal_signature.key_id(public), public, pem)


def public_bytes(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def load_private_key(pem: bytes, where: str) -> Ed25519PrivateKey:
    """The Ed25519 private key of a PKCS#8 PEM (``where`` names it in errors)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SealKeyError(
            f"{where} is not an unencrypted PKCS#8 PEM private key (tally seal keygen writes "
            f"one): {exc}"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SealKeyError(f"{where} holds a {type(key).__name__}, not an Ed25519 key")
    return key


async def publish(store: SealSigningStore, pair: KeyPair) -> datetime:
    """Publish ``pair``'s public key: it signs from now on; the key before it is retired
    (kept, with its validity, so the seals it signed stay verifiable)."""
    return await store.add_key(pair.key_id, pair.public_key)


async def sign_seals(
    store: SealSigningStore, private: Ed25519PrivateKey, period: str | None = None
) -> list[Unsigned]:
    """Sign every seal (of ``period``, or all) that has no signature yet, with the current
    key, which ``private`` must be; returns the seals signed."""
    key_id = seal_signature.key_id(public_bytes(private))
    current = await store.current_key()
    if current is None:
        raise SealKeyError("no seal key is published yet: make one with `tally seal keygen`")
    if current != key_id:
        raise SealKeyError(
            f"the configured seal key {key_id} is not the current one ({current}): it was "
            "retired by a later `tally seal keygen`, or never published; configure the "
            "current key's file or secret"
        )
    signed = []
    for seal in await store.unsigned(period):
        message = seal_signature.signed_bytes(seal.period, seal.sequence, seal.root, seal.entries)
        await store.add_signature(seal, key_id, private.sign(message))
        signed.append(seal)
    return signed
