"""Voids as an operator and an integration make them: ``tally events void`` and a
``tally.void`` event through the stream; the usage report, allocation tracking, the event's
story and verify follow; a second void and a void of nothing are refused with a reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from support.cli import tally
from support.ledger_support import api, event
from tally.config import Settings


async def test_voids_from_the_cli_and_from_the_stream_follow_on_every_surface(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = (midnight - timedelta(hours=1)).isoformat()
    void = {"source": "test", "id": "y2", "reason": "test traffic sent to production"}
    for raw in (
        api("y1", count=40, time=yesterday),
        api("y2", count=2, time=yesterday),
        api("y3", count=7, time=yesterday),
        event("tally.void", "void-y2", void, time=midnight.isoformat()),
    ):
        await stream.xadd(settings.stream, {b"event": raw})
    assert (await tally(settings, "consume", "--until-idle")).code == 0

    voided = await tally(
        settings, "events", "void", "test", "y1", "--reason", "counted twice", "--by", "ops"
    )
    assert voided.code == 0, voided
    assert "voided (test, y1): 40 requests taken back" in voided.said, voided

    again = await tally(settings, "events", "void", "test", "y1", "--reason", "again")
    assert again.code == 1 and "already voided" in again.said, again
    nothing = await tally(settings, "events", "void", "test", "nope", "--reason", "x")
    assert nothing.code == 1 and "never metered" in nothing.said, nothing
    blank = await tally(settings, "events", "void", "test", "y3", "--reason", " ")
    assert blank.code == 2 and "--reason" in blank.said, blank
    nobody = await tally(settings, "events", "void", "test", "y3", "--reason", "x", "--by", " ")
    assert nobody.code == 2 and "--by" in nobody.said, nobody

    report = await tally(
        settings, "report", "api-usage", "--org", "acme", "--preset", "previous-7-days",
        "--format", "json",
    )  # fmt: skip
    assert report.json()["sections"]["totals"][0]["requests"] == 7
    period = yesterday[:7]
    usage = await tally(settings, "usage", "--org", "acme", "--period", period, "--format", "json")
    assert usage.json()["meters"]["api_requests"]["used"] == "7"

    story = (await tally(settings, "events", "show", "test", "y1", "--format", "json")).json()
    assert story["status"] == "voided"
    assert story["void"]["reason"] == "counted twice"
    assert story["void"]["requested_by"].startswith("cli:")
    assert story["void"]["requested_by"].endswith(" for ops")
    assert story["void"]["reversal"]["kind"] == "usage_reversal"
    shown = await tally(settings, "events", "show", "test", "y2")
    assert "void of (test, y2) by source test (tally.void (test, void-y2))" in shown.said, shown
    assert "test traffic sent to production" in shown.said

    verify = await tally(settings, "ledger", "verify")
    assert verify.code == 0, verify
