"""Month seals recomputed from the entries they cover, and their signatures checked."""

from __future__ import annotations

from tally.adapters.postgres import seals
from tally.adapters.postgres.verification.registry import Context, check
from tally.domain import seal_signature


@check(
    "seals",
    "every month seal recomputes from the entries it covers, the lane heads it holds still "
    "hold the hashes it saw, and its signature (if signed) verifies with its published key",
    "seal",
)
async def month_seals(ctx: Context) -> None:
    """A sealed month rewritten afterwards, even with every hash recomputed, shows here; so
    does a signature changed after it was stored."""
    conn, result = ctx.conn, ctx.result
    period = ctx.period
    stored = await seals.stored(conn, period)
    result.seals = len(stored)
    for detail in await seals.recompute(conn, stored):
        result.add("seal", detail)
    keys = {key.key_id: bytes.fromhex(key.public_key) for key in await seals.stored_keys(conn)}
    for seal in stored:
        if seal.signature is None or seal.key_id is None:
            continue
        signature = bytes.fromhex(seal.signature)
        if not seal_signature.verify(keys[seal.key_id], signature, seal.signed_bytes()):
            result.add(
                "seal",
                f"seal {seal.sequence} of {seal.period}: its signature by key {seal.key_id} "
                "does not verify: the signature or the seal was changed after signing",
            )
