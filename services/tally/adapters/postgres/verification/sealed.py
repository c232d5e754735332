"""Month seals recomputed from the entries they cover."""

from __future__ import annotations

from tally.adapters.postgres import seals
from tally.adapters.postgres.verification.registry import Context, check


@check(
    "seals",
    "every month seal recomputes from the entries it covers, and the lane heads it holds still "
    "hold the hashes it saw",
    "seal",
)
async def month_seals(ctx: Context) -> None:
    """A sealed month rewritten afterwards, even with every hash recomputed, shows here."""
    conn, result = ctx.conn, ctx.result
    period = ctx.period
    stored = await seals.stored(conn, period)
    result.seals = len(stored)
    for detail in await seals.recompute(conn, stored):
        result.add("seal", detail)
