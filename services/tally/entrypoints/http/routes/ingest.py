"""Usage events over HTTP (the CloudEvents HTTP binding): what an integration that cannot
reach Redis sends instead of an XADD.

A producer key sends events as its one source; the request is read (up to its size limit),
turned into stream entries (``tally.domain.ingest``), counted against the key's event
budget and XADDed on each event's shard (waiting for a replica where the shard has one)
before the 202: an event answered is in the stream. Nothing of a refused request is
written. What the consumer makes of each event is at ``GET /v1/events/{source}/{id}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from tally import bootstrap
from tally.config import Settings
from tally.domain import ingest
from tally.domain.access import Scope
from tally.domain.events import InvalidEvent
from tally.domain.rating import check_source
from tally.domain.throttle import EventBudget
from tally.entrypoints.http.auth import Caller, CallerDep, scoped
from tally.entrypoints.http.errors import ApiError, documented
from tally.sdk.producer import UsageProducer

router = APIRouter(tags=["ingest"])

EXAMPLE = {
    "specversion": "1.0",
    "id": "0196f0b4-6c1e-7a3b-9d2e-1f0a2b3c4d5e",
    "source": "crm-sync",
    "type": "api.request",
    "time": "2026-10-15T12:00:00Z",
    "subject": "acme",
    "data": {
        "oauth_client_id": "c-42",
        "method": "GET",
        "template_uri": "/api/v2/users/{userId}",
        "status": 200,
        "client_kind": "integration",
        "count": 1,
    },
}
EVENT_SCHEMA = {"type": "object", "required": list(ingest.REQUIRED)}
REQUEST_BODY = {
    "required": True,
    "description": "One event (structured mode), a JSON array of events (batch mode), or "
    "the event's data with its attributes as `ce-*` headers (binary mode).",
    "content": {
        ingest.STRUCTURED: {"schema": EVENT_SCHEMA, "example": EXAMPLE},
        ingest.BATCH: {"schema": {"type": "array", "items": EVENT_SCHEMA}, "example": [EXAMPLE]},
        "application/json": {
            "schema": {"type": "object"},
            "description": "binary mode: `data`, with `ce-specversion`, `ce-id`, "
            "`ce-source`, `ce-type`, `ce-subject`, `ce-time` headers",
        },
    },
}


class AcceptedEvent(BaseModel):
    source: str
    id: str
    stream: str  # the shard's key it was written to
    stream_id: str


class Accepted(BaseModel):
    """The events written to the stream, in the request's order."""

    accepted: int
    events: list[AcceptedEvent]


@router.post(
    "/v1/events",
    status_code=202,
    response_model=Accepted,
    responses=documented(400, 413),
    openapi_extra=scoped(Scope.events_write)["openapi_extra"] | {"requestBody": REQUEST_BODY},
)
async def send_events(request: Request, caller: CallerDep) -> Accepted:
    """Send usage events as the key's source: 202 once they are in the stream; 400 for
    what is not JSON or not a CloudEvent (`malformed_json`, `not_a_cloudevent`,
    `not_json`, `empty_batch`, `too_many_events`; a batch's refused events in `errors`),
    403 for an event of another source, 413 over the size limit, 429 over the key's
    event budget (`Retry-After`). Nothing of a refused request is written; sending the
    same request again is a duplicate, counted once."""
    settings: Settings = request.app.state.settings
    body = await _body(request, settings.ingest_max_body_bytes)
    headers = [
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw
    ]
    try:
        events = ingest.parse(
            request.headers.get("content-type"), headers, body, settings.ingest_max_batch
        )
    except ingest.Refused as exc:
        raise ApiError(400, exc.message, exc.code, errors=exc.errors or None) from exc
    if foreign := sorted({event.source for event in events} - {caller.source}):
        raise ApiError(
            403,
            f"this key sends events only as source {caller.source!r}, not {foreign[0]!r}",
        )
    _check_organizations(caller, events)
    budget: EventBudget = request.app.state.event_budget
    wait = budget.take(caller.key_id or "", len(events))
    if wait:
        raise ApiError(
            429,
            f"this key's event budget is spent: retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    routed = await _producer(request).publish_routed([event.raw for event in events])
    return Accepted(
        accepted=len(events),
        events=[
            AcceptedEvent(source=event.source, id=event.id, stream=stream, stream_id=stream_id)
            for event, (stream, stream_id) in zip(events, routed, strict=True)
        ],
    )


def _check_organizations(caller: Caller, events: list[ingest.Incoming]) -> None:
    """Every organization billed is one the source may bill (403 for the request if not):
    a key sends only what its source's registration allows (read with the key). An event
    naming none is the consumer's to refuse, with a dead letter."""
    source = caller.source or ""
    grants = {} if caller.grant is None else {source: caller.grant}
    try:
        for org in sorted({event.subject for event in events if event.subject is not None}):
            check_source(grants, source, org)
    except InvalidEvent as exc:
        raise ApiError(403, exc.reason) from exc


async def _body(request: Request, limit: int) -> bytes:
    """The body, read no further than ``limit`` bytes (413 beyond)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body is {declared} bytes: at most {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _producer(request: Request) -> UsageProducer:
    """The process's producer, made at the first event (the read-only API needs no Redis)."""
    state: Any = request.app.state
    if getattr(state, "producer", None) is None:
        settings: Settings = state.settings
        state.producer = bootstrap.producer(settings, bootstrap.service_urls(settings).redis)
    producer: UsageProducer = state.producer
    return producer
