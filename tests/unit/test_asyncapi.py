"""``schemas/asyncapi.json``: AsyncAPI 3.0.0 as the official JSON Schema checks it, and the
two streams as the wire contract and the alerts' delivery say.

(That the committed file is what ``tally schemas export`` writes: ``test_events``.)"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator

from support.alerts import ALERT
from support.ledger_support import ai, api, event
from tally.domain.alert_delivery import EVENT_TYPE, cloud_event

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL = ROOT / "tests" / "support" / "asyncapi" / "3.0.0.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "schemas" / "asyncapi.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def asyncapi_3() -> Draft7Validator:
    return Draft7Validator(json.loads(OFFICIAL.read_text(encoding="utf-8")))


def test_the_document_validates_as_asyncapi_3(
    document: dict[str, Any], asyncapi_3: Draft7Validator
) -> None:
    assert document["asyncapi"] == "3.0.0"
    errors = [f"{e.json_path}: {e.message}" for e in asyncapi_3.iter_errors(document)]
    assert not errors, errors


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("asyncapi",), "3.1.0"),
        (("operations", "webhooks", "action"), "consume"),  # an operation, under a $ref
        (("channels", "usage-shards", "parameters", "shard", "examples"), "{0}"),
    ],
)
def test_the_validator_refuses_what_asyncapi_3_does_not_allow(
    document: dict[str, Any], asyncapi_3: Draft7Validator, where: tuple[str, ...], value: str
) -> None:
    broken = copy.deepcopy(document)
    node = broken
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    assert not asyncapi_3.is_valid(broken)


def payload_validator(document: dict[str, Any], message: str) -> Draft202012Validator:
    """A validator of the payload of ``components.messages[message]``."""
    ref = document["components"]["messages"][message]["payload"]["$ref"]
    return Draft202012Validator({**document, "$ref": ref})


def test_the_usage_stream_carries_the_four_event_types(document: dict[str, Any]) -> None:
    channels = {name: c["address"] for name, c in document["channels"].items()}
    assert channels == {
        "usage": "tally:usage",
        "usage-shards": "tally:usage:{shard}",
        "alerts": "tally:alerts",
        "webhooks": "tally:alerts",
    }
    for channel in ("usage", "usage-shards"):
        assert "one field, `event`" in document["channels"][channel]["description"]
        assert set(document["channels"][channel]["messages"]) == {
            "api.request",
            "ai.usage",
            "license.usage",
            "tally.void",
        }
        operation = document["operations"][f"metering:{channel}"]
        assert operation["action"] == "receive" and "XACK" in operation["description"]
    assert "sha256" in document["channels"]["usage-shards"]["parameters"]["shard"]["description"]
    samples = {
        "api.request": api("r1"),
        "ai.usage": ai("t1", "agent_copilot", "2.5", "token"),
        "license.usage": event(
            "license.usage", "l1", {"license": "gc2", "model": "named", "users": 3}
        ),
        "tally.void": event("tally.void", "v1", {"source": "test", "id": "r1", "reason": "x"}),
    }
    for kind, wire in samples.items():
        valid = payload_validator(document, kind)
        assert valid.is_valid(json.loads(wire)), kind
        assert not valid.is_valid({**json.loads(wire), "data": {}}), kind


def test_the_alerts_stream_is_published_and_read_by_the_webhooks_group(
    document: dict[str, Any],
) -> None:
    assert document["operations"]["alerts"]["action"] == "send"
    assert "field `event`" in document["channels"]["alerts"]["description"]
    webhooks = document["channels"]["webhooks"]
    assert document["operations"]["webhooks"]["action"] == "receive"
    assert webhooks["bindings"]["redis"]["groupName"] == "webhooks"
    alert = cloud_event(ALERT)
    for message in ("alerts:Message", "webhooks:SubscribeMessage"):
        valid = payload_validator(document, message)
        assert valid.is_valid(alert) and alert["type"] == EVENT_TYPE
        assert not valid.is_valid({**alert, "type": "something.else"})
