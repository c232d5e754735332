"""The ``SealSigningStore`` port on PostgreSQL (as tally_writer): public keys and seal
signatures, both append-only (migration 0019). No private key ever comes here."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.ports.seal_signing import Unsigned
from tally.adapters.postgres.connection import raw_connection


class PostgresSealSigning:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add_key(self, key_id: str, public_key: bytes) -> datetime:
        async with raw_connection(self.engine) as conn:
            valid_from: datetime = await conn.fetchval(
                "INSERT INTO seal_key (key_id, public_key) VALUES ($1, $2) RETURNING valid_from",
                key_id,
                public_key,
            )
        return valid_from

    async def current_key(self) -> str | None:
        async with raw_connection(self.engine) as conn:
            found: str | None = await conn.fetchval(
                "SELECT key_id FROM seal_key ORDER BY valid_from DESC LIMIT 1"
            )
        return found

    async def unsigned(self, period: str | None) -> list[Unsigned]:
        async with raw_connection(self.engine) as conn:
            rows = await conn.fetch(
                """SELECT s.period, s.sequence, s.root, s.entries FROM period_seal s
                    WHERE ($1::text IS NULL OR s.period = $1)
                      AND NOT EXISTS (SELECT 1 FROM seal_signature g
                                       WHERE g.period = s.period AND g.sequence = s.sequence)
                    ORDER BY s.period, s.sequence""",
                period,
            )
        return [
            Unsigned(row["period"], row["sequence"], bytes(row["root"]).hex(), row["entries"])
            for row in rows
        ]

    async def add_signature(self, seal: Unsigned, key_id: str, signature: bytes) -> None:
        """Store the seal's signature; the same one stored already (a concurrent signer with
        the same key: Ed25519 is deterministic) is fine, another one is an error, never
        hidden."""
        async with raw_connection(self.engine) as conn:
            stored = await conn.fetchrow(
                """WITH added AS (
                       INSERT INTO seal_signature (period, sequence, key_id, signature)
                       VALUES ($1, $2, $3, $4) ON CONFLICT (period, sequence) DO NOTHING
                       RETURNING key_id, signature)
                   SELECT key_id, signature FROM added
                   UNION ALL
                   SELECT key_id, signature FROM seal_signature
                    WHERE period = $1 AND sequence = $2 AND NOT EXISTS (SELECT 1 FROM added)""",
                seal.period,
                seal.sequence,
                key_id,
                signature,
            )
        if stored is None or (stored["key_id"], bytes(stored["signature"])) != (key_id, signature):
            raise RuntimeError(
                f"seal {seal.sequence} of {seal.period} already carries another signature "
                f"(key {stored['key_id'] if stored else '?'}): not replaced"
            )
