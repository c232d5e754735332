"""The rate cards loaded in the ledger: what prices usage, the close and the estimator.
Nothing here writes (``tally migrate`` loads new cards)."""

from __future__ import annotations

import asyncpg

from tally.domain.ratecard import RateCard, RateCardBook


async def load_rate_cards(conn: asyncpg.Connection) -> RateCardBook:
    rows = await conn.fetch("SELECT body::text AS body FROM rate_card")
    return RateCardBook(RateCard.model_validate_json(row["body"]) for row in rows)
