"""The public keys that sign month seals, with their validity: public, like /openapi.json,
so anyone holding an invoice can check its seal's signature."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from tally.adapters.postgres import seals
from tally.adapters.postgres.seals import SealKey
from tally.domain import seal_signature
from tally.entrypoints.http.auth import scoped

router = APIRouter(tags=["ledger"])


class SealKeys(BaseModel):
    algorithm: str
    signed: str  # the canonical bytes' template
    keys: list[SealKey]


@router.get(seal_signature.KEYS_PATH, **scoped(None))
async def seal_keys(request: Request) -> SealKeys:
    """Every Ed25519 public key (raw 32 bytes, hex) that signs month seals, oldest first,
    each valid from `valid_from` until `valid_until` (null: the current key). A seal's
    signature (its invoice's `seal_signature`) signs the UTF-8 bytes `signed`, with the
    seal's period, sequence, root (hex) and entries."""
    return SealKeys(
        algorithm=seal_signature.ALGORITHM,
        signed=seal_signature.CANONICAL,
        keys=await seals.seal_keys(request.app.state.engine),
    )
