"""``tally emit``: publish one event to the usage stream (on its shard)."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from tally import bootstrap
from tally.bootstrap import service_urls
from tally.config import Settings, get_settings
from tally.domain.events import InvalidEvent, parse_event
from tally.domain.rating import EVENT_FIELD_BYTES
from tally.entrypoints.cli.rendering import Format, FormatOption, errors, fail
from tally.entrypoints.cli.rendering import print_rows as show


def _read_event(event: str | None) -> bytes:
    if event is not None and event != "-":
        return event.strip().encode()
    stdin = sys.stdin
    data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode()
    return data.strip()


def emit_command(
    event: Annotated[
        str | None,
        typer.Argument(
            help="The event: a CloudEvents JSON object (the wire format). Omitted or '-': stdin.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Publish even an invalid event (to exercise the dead-letter path)."
        ),
    ] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Publish one event to the usage stream; prints its stream id.

    The event is checked first (schema, types, size): an invalid one is
    refused with exit code 2 unless --force. The organization, feature and
    unit are checked by the consumer, against the rate card.
    """
    settings = get_settings()
    raw = _read_event(event)
    if not raw:
        raise fail("no event given: pass the JSON as an argument or on stdin", 2)
    problem: str | None = None
    source = event_id = None
    try:
        parsed = parse_event(raw)
        source, event_id = parsed.source, parsed.id
    except InvalidEvent as exc:
        problem = exc.reason
    size = len(EVENT_FIELD_BYTES) + len(raw)  # the whole entry, as the consumer counts it
    if problem is None and size > settings.max_event_bytes:
        problem = f"oversized: {size} bytes (limit {settings.max_event_bytes})"
    if problem is not None:
        if not force:
            raise fail(f"invalid event: {problem}", 2)
        errors.print(f"[yellow]warning:[/yellow] publishing an invalid event: {problem}")
    stream, stream_id = asyncio.run(_publish_one(settings, raw))
    if fmt is Format.json:
        show(
            {
                "stream": stream,
                "stream_id": stream_id,
                "source": source,
                "id": event_id,
                "valid": problem is None,
                "problem": problem,
            },
            fmt,
        )
    else:
        typer.echo(stream_id)


async def _publish_one(settings: Settings, raw: bytes) -> tuple[str, str]:
    """The key (the event's shard) and stream id it was published at."""
    url = service_urls(settings).redis
    async with bootstrap.producer(settings, url, max_retries=2) as producer:
        [routed] = await producer.publish_routed([raw])
        return routed


def register(app: typer.Typer) -> None:
    app.command("emit")(emit_command)
