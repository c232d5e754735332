"""The AsyncAPI 3 document of Tally's two streams, committed as ``schemas/asyncapi.json``.

FastStream generates it from the alerts stream's application (``alert_feed``: the webhooks'
subscriber and the stream's declared publisher), with the settings' defaults and a
documentation URL. The usage stream is read by Tally's own reader, not by FastStream, so it
is declared here for documentation: its keys (one, or one per shard), the consumer group,
the field ``event`` and the event types (usage and corrections), their JSON Schemas those
of ``schemas/``.
"""

from __future__ import annotations

import json
from typing import Any

from faststream.specification import AsyncAPI

from tally.adapters.alert_feed import FastStreamAlertFeed
from tally.config import Settings
from tally.domain.events import json_schemas

SERVER = "redis://localhost:6379"  # the document's; TALLY_REDIS_URL at run time
DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}
WIRE = (
    "Each entry has exactly one field, `event`, whose value is a CloudEvents 1.0 event in "
    "structured JSON (UTF-8). `(source, id)` is the idempotency key, forever: an event "
    "delivered twice is metered once, the same key with another payload is a recorded "
    "conflict. `subject` is the organization billed, `time` the billing month (UTC). An "
    "entry with another field, with `event` twice, or whose JSON repeats a key is refused "
    "with a reason into the dead-letter store."
)
READER = (
    "`tally consume`: consumer group `{group}`, created from id 0 by `tally migrate`. Tally's "
    "own reader, not a FastStream subscriber: it bounds each read by entries and bytes, and "
    "acknowledges (XACK) only after the PostgreSQL transaction committed, so each event is "
    "metered exactly once."
)
SHARD = (
    "With TALLY_STREAM_SHARDS=N > 1, the shard's Redis Cluster hash tag, braces included: "
    "`{0}` … `{N-1}`. An event belongs on shard "
    "`int.from_bytes(sha256(subject as UTF-8).digest()[:8], 'big') % N`; on another shard it "
    "is still metered exactly once (the idempotency key is global)."
)


def asyncapi_document() -> dict[str, Any]:
    """The document: FastStream's for the alerts stream, with the usage stream added."""
    feed = FastStreamAlertFeed(
        SERVER,
        DEFAULTS["alerts_stream"],
        consumer="hostname-pid",  # TALLY_CONSUMER_NAME's default
        claim_idle_ms=DEFAULTS["claim_idle_ms"],
        poll_s=DEFAULTS["alerts_poll_s"],
    )
    document: dict[str, Any] = json.loads(
        AsyncAPI(
            feed.broker,
            title="Tally",
            version="1",
            description=(
                "Tally's streams: usage events in (wire contract v1) and threshold alerts "
                "out, on Redis Streams (one server or a Redis Cluster)."
            ),
            schema_version="3.0.0",
        )
        .to_specification()
        .to_json()
    )
    for message in document["components"]["messages"].values():
        message.pop("correlationId")  # FastStream's header: Tally's entries carry none
    _add_usage_stream(document, DEFAULTS["stream"], DEFAULTS["group"])
    return document


def _add_usage_stream(document: dict[str, Any], stream: str, group: str) -> None:
    components = document["components"]
    messages = {}
    for name, schema in json_schemas().items():
        kind = name.removesuffix(".json")
        payload = {k: v for k, v in schema.items() if k not in ("$defs", "$id", "$schema")}
        components["schemas"].update(schema["$defs"])
        components["schemas"][kind] = json.loads(
            json.dumps(payload).replace('"#/$defs/', '"#/components/schemas/')
        )
        components["messages"][kind] = {
            "name": kind,
            "title": f"{kind} usage event",
            "summary": schema["description"],
            "description": f"Its JSON Schema (draft 2020-12) is `schemas/{name}`.",
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{kind}"},
        }
        messages[kind] = {"$ref": f"#/components/messages/{kind}"}
    server = [{"$ref": f"#/servers/{name}"} for name in document["servers"]]
    for channel, address, parameters, keys in (
        ("usage", stream, None, "TALLY_STREAM; TALLY_STREAM_SHARDS=1, the default"),
        (
            "usage-shards",
            f"{stream}:{{shard}}",
            {"shard": {"description": SHARD}},
            f"TALLY_STREAM_SHARDS=N > 1: the keys {stream}:{{0}} … {stream}:{{N-1}}",
        ),
    ):
        document["channels"][channel] = {
            "address": address,
            "title": channel,
            "description": f"Usage events ({keys}). {WIRE}",
            "servers": server,
            "messages": messages,
            "bindings": {
                "redis": {
                    "channel": address,
                    "method": "xreadgroup",
                    "groupName": group,
                    "bindingVersion": "custom",
                }
            },
            **({"parameters": parameters} if parameters else {}),
        }
        document["operations"][f"metering:{channel}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "description": READER.format(group=group),
            "messages": [{"$ref": f"#/channels/{channel}/messages/{kind}"} for kind in messages],
        }
