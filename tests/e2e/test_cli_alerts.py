"""``tally webhook …`` and ``tally alerts …`` for real: register, list, thresholds, deliver."""

from __future__ import annotations

import re

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from support.cli import tally, tally_all
from support.ledger_support import api, drain, event
from tally.config import Settings


async def test_webhooks_thresholds_and_alerts_through_the_cli(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    added, bad_url, bad_secret, unknown, no_org, nonsense = await tally_all(
        settings,
        ["webhook", "add", "http://127.0.0.1:9/hook"],
        ["webhook", "add", "ftp://example.com"],
        ["webhook", "add", "https://example.com/h", "--secret", "hunter2"],
        ["webhook", "remove", "wh_0000000000000000"],
        ["alerts", "thresholds", "hooli", "--at", "50"],
        ["alerts", "thresholds", "acme", "--at", "eighty"],
    )
    assert added.code == 0, added
    secret = re.search(r"whsec_[A-Za-z0-9+/=]+", added.stdout)
    assert secret and "shown once" in added.said
    webhook = re.search(r"wh_[0-9a-f]{16}", added.stdout)
    assert webhook
    for run, says in (
        (bad_url, "http:// or https://"),
        (bad_secret, "whsec_"),
        (unknown, "no registered webhook"),
        (no_org, "no organization 'hooli'"),
        (nonsense, "percentages"),
    ):
        assert run.code == 2 and says in run.said, run
    (listed,) = (await tally(settings, "webhook", "list", "--format", "json")).json()
    assert listed["id"] == webhook.group() and listed["enabled"] and "secret" not in listed

    set_to = await tally(settings, "alerts", "thresholds", "acme", "--at", "50,90")
    assert set_to.code == 0 and "50, 90 %" in set_to.said, set_to
    await stream.xadd(
        settings.stream,
        {b"event": event("license.usage", "l", {"license": "gc2", "model": "named", "users": 1})},
    )
    await drain(settings)
    await stream.xadd(settings.stream, {b"event": api("r", count=60_000)})  # 55 % of 110,000
    await drain(settings)

    removed = await tally(settings, "webhook", "remove", webhook.group())
    assert removed.code == 0, removed
    (gone,) = (await tally(settings, "webhook", "list", "--format", "json")).json()
    assert not gone["enabled"]

    deliver = await tally(settings, "alerts", "deliver", "--until-idle")
    assert deliver.code == 0 and "published 1, 0 webhook attempts" in deliver.said, deliver
    (alert,) = (await tally(settings, "alerts", "list", "--org", "acme", "--format", "json")).json()
    assert (alert["meter"], alert["kind"], alert["threshold"]) == ("api_request", "used", "50")
    assert alert["published_at"] is not None and alert["webhooks"] == []  # removed: not POSTed
    table = await tally(settings, "alerts", "list")
    assert table.code == 0 and "acme" in table.stdout, table
