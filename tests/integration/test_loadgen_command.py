"""``tally loadgen`` publishes the synthetic mix to a real Redis, and prints its summary."""

from __future__ import annotations

import json
from typing import Any

import redis
from typer.testing import CliRunner

from tally_tools.loadgen import LoadEntry, LoadMix, LoadSummary


def generate(*args: Any, **kwargs: Any) -> tuple[list[LoadEntry], LoadSummary]:
    """The whole mix as a list, with its summary."""
    mix = LoadMix(*args, **kwargs)
    return list(mix), mix.summary


# --- tally loadgen ------------------------------------------------------------------------


def test_loadgen_command_publishes_the_mix(cli_env: Any, redis_url: str, stream_key: str) -> None:
    from tally.entrypoints.cli import app

    args = [
        "loadgen",
        "--events",
        "2500",
        "--orgs",
        "acme,globex",
        "--period",
        "2026-10",
        "--seed",
        "5",
        "--bad",
        "0.02",
        "--batch",
        "300",
        "--format",
        "json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout is only the JSON; progress went to stderr
    _, expected = generate(["acme", "globex"], "2026-10", 2500, seed=5, bad=0.02)
    assert report["entries"] == 2500 and report["bad_total"] == expected.bad_total
    assert report["billable_requests"] == expected.billable_requests
    assert report["publish"]["published"] == 2500
    with redis.Redis.from_url(redis_url) as client:
        stored = client.xrange(stream_key)
    assert len(stored) == 2500
    assert report["publish"]["last_stream_id"] == stored[-1][0].decode()
    entries, _ = generate(["acme", "globex"], "2026-10", 2500, seed=5, bad=0.02)
    assert [fields for _, fields in stored] == [
        {k.encode(): v for k, v in entry.fields.items()} for entry in entries
    ]


def test_loadgen_dry_run_publishes_nothing(cli_env: Any, redis_url: str, stream_key: str) -> None:
    from tally.entrypoints.cli import app

    result = CliRunner().invoke(app, ["loadgen", "--events", "300", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "expected per organization" in result.stdout
    with redis.Redis.from_url(redis_url) as client:
        assert client.exists(stream_key) == 0
