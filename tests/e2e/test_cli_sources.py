"""``tally source …`` for real, and the story a user lives with ``TALLY_REQUIRE_KNOWN_SOURCES``
on: events from an unknown source dead-lettered by ``tally consume``, the fix, the replay."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from support.cli import CLI, Run, env_for, xadd_like_an_integration
from support.ledger_support import api
from tally.config import Settings

CHECKING = {"TALLY_REQUIRE_KNOWN_SOURCES": "true"}


async def tally(settings: Settings, *args: str, env: dict[str, str] | None = None) -> Run:
    process = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        env=env_for(settings) | (env or {}),
        cwd=settings.data_dir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=180)
    assert process.returncode is not None
    return Run(args, process.returncode, stdout.decode(), stderr.decode())


async def test_sources_through_the_cli(engine: AsyncEngine, settings: Settings) -> None:
    neither, both, unknown_org, remove_unknown, added = await asyncio.gather(
        tally(settings, "source", "add", "crm-sync"),
        tally(settings, "source", "add", "crm-sync", "--orgs", "acme", "--any-org"),
        tally(settings, "source", "add", "crm-sync", "--orgs", "acme,hooli"),
        tally(settings, "source", "remove", "nobody"),
        tally(settings, "source", "add", "crm-sync", "--orgs", "acme"),
    )
    for run in (neither, both):
        assert run.code == 2, run
        assert "give --orgs a,b (the organizations it may bill) or --any-org" in run.said, run
    assert unknown_org.code == 2, unknown_org
    assert "no organization 'hooli': add it with `tally org add`" in unknown_org.said
    assert remove_unknown.code == 2, remove_unknown
    assert "no registered source 'nobody'" in remove_unknown.said
    assert added.code == 0, added
    assert "crm-sync may bill acme" in added.said

    ok = await xadd_like_an_integration(settings, api("e1", count=2, source="crm-sync"))
    await xadd_like_an_integration(settings, api("e2", count=3, source="crm-sync", org="globex"))
    await xadd_like_an_integration(settings, api("e3", count=5, source="stranger"))
    consumed = await tally(settings, "consume", "--until-idle", env=CHECKING)
    assert consumed.code == 0, consumed
    letters = (await tally(settings, "dlq", "list", "--format", "json")).json()["items"]
    assert sorted(letter["code"] for letter in letters) == [
        "organization_not_allowed",
        "unknown_source",
    ]
    assert ok not in {letter["stream_id"] for letter in letters}

    fixed = await asyncio.gather(
        tally(settings, "source", "add", "crm-sync", "--orgs", "acme,globex"),
        tally(settings, "source", "add", "stranger", "--any-org"),
    )
    assert all(run.code == 0 for run in fixed), fixed
    replayed = (
        await tally(settings, "dlq", "replay", "--all", "--format", "json", env=CHECKING)
    ).json()
    assert [row["outcome"] for row in replayed] == ["metered", "metered"]

    again, removed = await asyncio.gather(
        tally(settings, "source", "add", "stranger", "--any-org"),
        tally(settings, "source", "remove", "crm-sync"),
    )
    assert "already there: stranger may bill any organization" in again.said, again
    assert removed.code == 0, removed
    listed, history, table = await asyncio.gather(
        tally(settings, "source", "list", "--format", "json"),
        tally(settings, "source", "list", "--all", "--format", "json"),
        tally(settings, "source", "list"),
    )
    assert [
        {key: row[key] for key in ("source", "enabled", "any_org", "orgs")} for row in listed.json()
    ] == [
        {"source": "crm-sync", "enabled": False, "any_org": False, "orgs": []},
        {"source": "stranger", "enabled": True, "any_org": True, "orgs": []},
    ]
    assert [(row["source"], row["orgs"]) for row in history.json()] == [
        ("crm-sync", ["acme"]),
        ("crm-sync", ["acme", "globex"]),
        ("crm-sync", []),
        ("stranger", []),
    ]
    assert table.code == 0 and "stranger" in table.stdout and "*" in table.stdout, table
