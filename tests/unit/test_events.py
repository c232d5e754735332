"""Wire contract v1 (docs: integrate/wire-format.md): what parses, what is refused and why,
and ``schemas/``."""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from tally.domain.events import (
    AiUsageEvent,
    ApiRequestEvent,
    InvalidEvent,
    LicenseUsageEvent,
    json_schemas,
    optional_attributes,
    parse_event,
)
from tally.entrypoints.cli.schemas import documents

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"

# The example of the wire format page, verbatim.
API = {
    "specversion": "1.0",
    "id": "01JD7Q6X0000000000000000AA",
    "source": "crm-sync",
    "type": "api.request",
    "time": "2026-11-21T10:00:00Z",
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


def with_(base: dict[str, Any], kind: str | None = None, **data: Any) -> dict[str, Any]:
    """``base`` with another type and ``data`` (a deep copy)."""
    body = copy.deepcopy(base)
    if kind is not None:
        body["type"] = kind
        body["data"] = {}
    body["data"].update(data)
    return body


AI = with_(API, "ai.usage", feature="voice_bot", quantity="12.5", unit="minute", user_id="u-7")
LICENSE = with_(API, "license.usage", license="gc2", model="named", users=20)


def raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    holder = body
    for key in path[:-1]:
        holder = holder[key]
    del holder[path[-1]]
    return body


def changed(body: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**copy.deepcopy(body), **fields}


# ---------------------------------------------------------------------------- valid


@pytest.mark.parametrize(
    ("body", "model"),
    [
        (API, ApiRequestEvent),
        (without(API, "data", "count"), ApiRequestEvent),
        (with_(API, method="DELETE", status=503, client_kind="ui", count=250), ApiRequestEvent),
        (AI, AiUsageEvent),
        (without(AI, "data", "user_id"), AiUsageEvent),
        (with_(AI, feature="agent_copilot", quantity=0, unit="token"), AiUsageEvent),
        (LICENSE, LicenseUsageEvent),
        (with_(LICENSE, license="gc3", model="concurrent", users=0), LicenseUsageEvent),
        (with_(API, "license.usage", license="gc1", model="hourly", hours=7.5), LicenseUsageEvent),
        (changed(API, datacontenttype="application/json"), ApiRequestEvent),
    ],
    ids=[
        "api-design-example",
        "api-count-defaults",
        "api-other-values",
        "ai",
        "ai-no-user",
        "ai-zero",
        "license-named",
        "license-concurrent",
        "license-hourly",
        "datacontenttype",
    ],
)
def test_valid_events_of_each_type_parse(body: dict[str, Any], model: type) -> None:
    event = parse_event(raw(body))
    assert isinstance(event, model)
    assert (event.source, event.id, event.subject) == (body["source"], body["id"], "acme")
    assert event.period == "2026-11"


def test_the_design_example_reads_as_written() -> None:
    event = parse_event(raw(API))
    assert isinstance(event, ApiRequestEvent)
    assert event.data.count == 1 and event.data.status == 200
    assert event.data.template_uri == "/api/v2/users/{userId}"
    assert parse_event(raw(without(API, "data", "count"))).data.count == 1  # type: ignore[union-attr]


WIRE_FORMAT_PAGE = Path(__file__).resolve().parents[2] / "docs/content/integrate/wire-format.md"


def test_the_documented_redis_cli_example_is_a_valid_event() -> None:
    """The docs' `redis-cli XADD` line (the README's too), as a reader would paste it: its
    event parses."""
    line = next(
        line for line in WIRE_FORMAT_PAGE.read_text().splitlines() if "redis-cli XADD" in line
    )
    readme = (WIRE_FORMAT_PAGE.parents[3] / "README.md").read_text()
    assert line in readme.splitlines(), "the README shows the page's example as it is"
    body = line.split(" event '", 1)[1].rsplit("'", 1)[0]
    event = parse_event(body.encode())
    assert isinstance(event, ApiRequestEvent)
    assert (event.source, event.subject, event.data.count) == ("crm-sync", "acme", 1)


@pytest.mark.parametrize(
    ("time", "period", "utc"),
    [
        ("2026-11-01T01:00:00+02:00", "2026-10", "2026-10-31T23:00:00+00:00"),
        ("2026-10-31T23:30:00-01:00", "2026-11", "2026-11-01T00:30:00+00:00"),
        ("2026-12-31T23:59:59.999Z", "2026-12", "2026-12-31T23:59:59.999000+00:00"),
        ("2027-01-01T00:00:00+00:00", "2027-01", "2027-01-01T00:00:00+00:00"),
        ("2026-11-21T10:00:00z", "2026-11", "2026-11-21T10:00:00+00:00"),
    ],
)
def test_the_period_is_the_utc_month_whatever_the_offset(time: str, period: str, utc: str) -> None:
    event = parse_event(raw(changed(API, time=time)))
    assert event.period == period
    assert event.utc_time.isoformat() == utc


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (b"0.1", "0.1"),
        (b'"0.1"', "0.1"),
        (b"12.5", "12.5"),
        (b'"12.5"', "12.5"),
        (b"5000", "5000"),
        (b'"5000"', "5000"),
        (b"0", "0"),
        (b"123456789012.123456789", "123456789012.123456789"),
        (b'"123456789012.123456789"', "123456789012.123456789"),
    ],
)
def test_quantity_as_number_or_string_is_an_exact_decimal(wire: bytes, expected: str) -> None:
    body = raw(with_(AI, quantity="PLACEHOLDER")).replace(b'"PLACEHOLDER"', wire)
    event = parse_event(body)
    assert isinstance(event, AiUsageEvent)
    quantity = event.data.quantity
    assert type(quantity) is Decimal
    assert quantity == Decimal(expected)
    assert str(quantity) == expected  # never through float: 0.1 is exactly one tenth


def test_hours_are_an_exact_decimal_too() -> None:
    body = raw(without(with_(LICENSE, model="hourly", hours="X"), "data", "users"))
    event = parse_event(body.replace(b'"X"', b"0.1"))
    assert isinstance(event, LicenseUsageEvent)
    assert event.data.hours == Decimal("0.1") and str(event.data.hours) == "0.1"


def test_an_integral_json_number_is_an_integer_as_json_schema_says() -> None:
    event = parse_event(raw(with_(API, count=1)).replace(b'"count": 1', b'"count": 2.0'))
    assert event.data.count == 2 and isinstance(event.data.count, int)


def test_non_ascii_utf8_text_is_fine() -> None:
    event = parse_event(raw(with_(API, template_uri="/api/v2/café/{id}")))
    assert event.data.template_uri == "/api/v2/café/{id}"  # type: ignore[union-attr]
    assert parse_event(json.dumps(API, ensure_ascii=False).encode("utf-8")).id == API["id"]


# ---------------------------------------------------------------------------- invalid

HOURLY_WITH_USERS = with_(LICENSE, model="hourly")
NAMED_WITH_HOURS = without(with_(LICENSE, hours=8), "data", "users")
WITH_BOTH = with_(LICENSE, model="concurrent", hours=8)
AI_TEMPLATE = raw(with_(AI, quantity="Q"))


def ai_with_quantity(literal: bytes) -> bytes:
    return AI_TEMPLATE.replace(b'"Q"', literal)


INVALID: dict[str, tuple[bytes, str]] = {
    # missing fields, at the top and in data
    "missing source": (raw(without(API, "source")), "schema violation: source: Field required"),
    "missing subject": (raw(without(API, "subject")), "subject: Field required"),
    "missing time": (raw(without(API, "time")), "time: Field required"),
    "missing data": (raw(without(API, "data")), "data: Field required"),
    "missing type": (raw(without(API, "type")), "type: Field required"),
    "missing method": (raw(without(API, "data", "method")), "data.method: Field required"),
    "missing quantity": (raw(without(AI, "data", "quantity")), "data.quantity: Field required"),
    "missing license model": (
        raw(without(LICENSE, "data", "model")),
        "data.model: Field required",
    ),
    # extra fields
    "top-level field not named as a CloudEvents attribute": (
        raw(changed(API, Colour="red")),
        "'Colour' is not a CloudEvents attribute name",
    ),
    "extra data field": (
        raw(with_(API, colour="red")),
        "data.colour: Extra inputs are not permitted",
    ),
    # wrong types and values
    "status as string": (
        raw(with_(API, status="200")),
        "data.status: Input should be a valid integer",
    ),
    "count as string": (raw(with_(API, count="3")), "data.count: Input should be a valid integer"),
    "count as decimal": (raw(with_(API, count=1.5)), "data.count: Input should be a valid integer"),
    "quantity with underscores": (
        raw(with_(AI, quantity="1_000")),
        "data.quantity: Value error, a quantity string is plain decimal digits",
    ),
    "signed quantity string": (
        raw(with_(AI, quantity="+3")),
        "data.quantity: Value error, a quantity string is plain decimal digits",
    ),
    "bool count": (raw(with_(API, count=True)), "data.count: Input should be a valid integer"),
    "count 0": (
        raw(with_(API, count=0)),
        "data.count: Input should be greater than or equal to 1",
    ),
    "negative count": (raw(with_(API, count=-3)), "data.count: Input should be greater than"),
    "status out of range": (raw(with_(API, status=700)), "data.status: Input should be less"),
    "method not allowed": (raw(with_(API, method="FETCH")), "data.method: Input should be 'GET'"),
    "method lower case": (raw(with_(API, method="get")), "data.method: Input should be 'GET'"),
    "data not an object": (
        raw(changed(API, data=[1])),
        "data: Input should be a valid dictionary",
    ),
    "id as number": (raw(changed(API, id=42)), "id: Input should be a valid string"),
    "empty subject": (raw(changed(API, subject="")), "subject: String should have at least 1"),
    "specversion 0.3": (raw(changed(API, specversion="0.3")), "specversion: Input should be '1.0'"),
    "unknown license": (raw(with_(LICENSE, license="gc9")), "data.license: Input should be"),
    "bool users": (raw(with_(LICENSE, users=True)), "data.users: Input should be a valid integer"),
    "bool quantity": (raw(with_(AI, quantity=True)), "data.quantity: Decimal input should be"),
    "quantity not a number": (
        raw(with_(AI, quantity="lots")),
        "data.quantity: Value error, a quantity string is plain decimal digits",
    ),
    # time
    "naive time": (
        raw(changed(API, time="2026-11-21T10:00:00")),
        "time: Input should have timezone info",
    ),
    "date only": (raw(changed(API, time="2026-11-21")), "time:"),
    "not a time": (raw(changed(API, time="yesterday")), "time: Input should be a valid datetime"),
    # type
    "unknown type": (
        raw(changed(API, type="api.response")),
        "unknown type 'api.response': expected one of api.request, ai.usage, license.usage",
    ),
    "type of another event": (raw(changed(API, type="ai.usage")), "data.feature: Field required"),
    # license model versus users / hours
    "hourly license with users": (
        raw(HOURLY_WITH_USERS),
        "data: Value error, hourly licenses report 'hours' (and no 'users')",
    ),
    "named license with hours": (
        raw(NAMED_WITH_HOURS),
        "data: Value error, named licenses report 'users' (and no 'hours')",
    ),
    "concurrent license with both": (
        raw(WITH_BOTH),
        "concurrent licenses report 'users' (and no 'hours')",
    ),
    "negative hours": (
        raw(without(with_(LICENSE, model="hourly", hours=-1), "data", "users")),
        "data.hours: Input should be greater than or equal to 0",
    ),
    "negative users": (
        raw(with_(LICENSE, users=-1)),
        "data.users: Input should be greater than or equal to 0",
    ),
    # non-finite and negative quantities
    "bare NaN": (ai_with_quantity(b"NaN"), "malformed JSON: non-finite number NaN"),
    "bare Infinity": (ai_with_quantity(b"Infinity"), "malformed JSON: non-finite number Infinity"),
    "bare -Infinity": (
        ai_with_quantity(b"-Infinity"),
        "malformed JSON: non-finite number -Infinity",
    ),
    "NaN string": (
        ai_with_quantity(b'"NaN"'),
        "data.quantity: Value error, a quantity string is plain decimal digits",
    ),
    "Infinity string": (
        ai_with_quantity(b'"Infinity"'),
        "data.quantity: Value error, a quantity string is plain decimal digits",
    ),
    "negative quantity": (
        ai_with_quantity(b"-0.5"),
        "data.quantity: Input should be greater than or equal to 0",
    ),
    "negative quantity string": (
        ai_with_quantity(b'"-1"'),
        "data.quantity: Value error, a quantity string is plain decimal digits",
    ),
    "absurd quantity": (ai_with_quantity(b"1e400"), "data.quantity: Input should be less than"),
    # not a JSON object
    "top-level array": (b"[" + raw(API) + b"]", "malformed JSON: expected an object, got list"),
    "top-level string": (b'"hello"', "malformed JSON: expected an object, got str"),
    "top-level null": (b"null", "malformed JSON: expected an object, got NoneType"),
    "truncated JSON": (raw(API)[:40], "malformed JSON: "),
    "empty": (b"", "malformed JSON: "),
    "invalid UTF-8": (b"\xff\xfe{}", "malformed JSON: not UTF-8"),
    "invalid UTF-8 inside a string": (
        raw(API).replace(b"crm-sync", b"crm-\xc3\x28sync"),
        "malformed JSON: not UTF-8",
    ),
}


@pytest.mark.parametrize(("wire", "reason"), INVALID.values(), ids=list(INVALID))
def test_each_invalid_input_is_refused_with_a_reason_naming_the_problem(
    wire: bytes, reason: str
) -> None:
    with pytest.raises(InvalidEvent) as refused:
        parse_event(wire)
    assert reason in refused.value.reason, refused.value.reason
    assert str(refused.value) == refused.value.reason


# ---------------------------------------------------------------------------- repeated keys


class Obj(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs, in order: it can hold a repeated key."""


def obj(body: dict[str, Any]) -> Obj:
    return Obj((k, obj(v) if isinstance(v, dict) else v) for k, v in body.items())


def dumps(value: Any, spaces: Iterator[str]) -> str:
    """JSON text of ``value`` with the whitespace ``spaces`` gives around each colon."""
    if isinstance(value, Obj):
        members = (
            f"{json.dumps(k)}{next(spaces)}:{next(spaces)}{dumps(v, spaces)}" for k, v in value
        )
        return "{" + ",".join(members) + "}"
    return json.dumps(value)


REPEATED_KEYS = {
    "count 1 then 500": (
        raw(API).replace(b'"count": 1', b'"count": 1, "count": 500'),
        "duplicate key 'count' in a JSON object",
    ),
    "subject acme then globex": (
        raw(API).replace(b'"subject": "acme"', b'"subject": "acme", "subject": "globex"'),
        "duplicate key 'subject'",
    ),
    "quantity in ai.usage": (
        raw(AI).replace(b'"unit"', b'"quantity": "999", "unit"'),
        "duplicate key 'quantity'",
    ),
    "spaced like a pretty printer": (
        json.dumps(API, indent=2).replace('"count": 1', '"count" :\n 1,\n"count"\t: 500').encode(),
        "duplicate key 'count'",
    ),
    "escaped spelling of the same key": (
        raw(API).replace(b'"count": 1', b'"count": 1, "co\\u0075nt": 500'),
        "duplicate key 'count'",
    ),
    "deep inside data": (
        raw(with_(API, nested={"a": {"b": 1}})).replace(b'"b": 1', b'"b": 1, "b": 2'),
        "duplicate key 'b'",
    ),
}


@pytest.mark.parametrize(("wire", "reason"), REPEATED_KEYS.values(), ids=list(REPEATED_KEYS))
def test_a_repeated_key_is_refused_not_read_last_wins(wire: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as refused:
        parse_event(wire)
    assert refused.value.code == "duplicate_key"
    assert reason in refused.value.reason, refused.value.reason


def test_a_quote_and_colon_inside_a_value_is_not_taken_for_a_key() -> None:
    body = with_(API, template_uri='/a/"b": c/{id}')
    assert parse_event(raw(body)) == parse_event(json.dumps(body, separators=(",", ":")).encode())


whitespace = st.sampled_from(["", " ", "\n", "\t", "\r\n  "])
keys = st.text(alphabet='az":\\ \u00e9{', min_size=1, max_size=6)
scalars = st.one_of(st.integers(-5, 5), st.booleans(), st.text(alphabet='a":\\', max_size=4))


@given(
    base=st.sampled_from([API, AI, LICENSE]),
    where=st.sampled_from(["top", "data", "nested"]),
    nested=st.dictionaries(keys, scalars, min_size=1, max_size=4),
    pick=st.integers(0, 100),
    at=st.integers(0, 100),
    value=scalars,
    spaces=st.lists(whitespace, min_size=1),
)
def test_any_repeated_key_at_any_depth_is_refused(
    base: dict[str, Any],
    where: str,
    nested: dict[str, Any],
    pick: int,
    at: int,
    value: Any,
    spaces: list[str],
) -> None:
    event = obj(with_(base, nested=nested) if where == "nested" else base)
    data = next(v for k, v in event if k == "data")
    target = {
        "top": event,
        "data": data,
        "nested": next((v for k, v in data if k == "nested"), data),
    }[where]
    key = target[pick % len(target)][0]
    target.insert(at % (len(target) + 1), (key, value))
    wire = dumps(event, itertools.cycle(spaces)).encode()
    with pytest.raises(InvalidEvent) as refused:
        parse_event(wire)
    assert refused.value.code == "duplicate_key"
    assert repr(key) in refused.value.reason


@given(base=st.sampled_from([API, AI, LICENSE]), spaces=st.lists(whitespace, min_size=1))
def test_without_a_repeated_key_whitespace_changes_nothing(
    base: dict[str, Any], spaces: list[str]
) -> None:
    assert parse_event(dumps(obj(base), itertools.cycle(spaces)).encode()) == parse_event(raw(base))


# ---------------------------------------------------------------------------- attributes

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    "attributes",
    [
        {"traceparent": TRACEPARENT, "tracestate": "congo=t61rcWkgMzE"},
        {"dataschema": "https://schemas.example.com/api.request/v1.json"},
        {"dataschema": "urn:example:usage:v1"},
        {"datacontenttype": "application/json"},
        {"datacontenttype": "application/json; charset=utf-8"},
        {"datacontenttype": 'Application/JSON;charset="UTF-8"'},
        {"datacontenttype": "application/vnd.acme.usage+json"},
        {"partitionkey": "acme", "sequence": 42, "sampled": True, "expiry": "2026-12-01T00:00Z"},
        {"a": 0, "z9": -(2**31), "x" * 20: 2**31 - 1, "reference": "../users/7"},
    ],
    ids=repr,
)
def test_cloudevents_optional_attributes_and_extensions_are_accepted(
    attributes: dict[str, Any],
) -> None:
    for base in (API, AI, LICENSE):
        event = parse_event(raw({**base, **attributes}))
        shown = {**event.model_dump(include=set(attributes)), **(event.model_extra or {})}
        assert shown == attributes
        assert optional_attributes(raw({**base, **attributes})) == attributes


REFUSED_ATTRIBUTES = {
    "binary data": (
        {"data_base64": "AAE="},
        "data_base64: binary data is not accepted: Tally's data is a JSON object in 'data'",
    ),
    "upper case": ({"Traceparent": "x"}, "'Traceparent' is not a CloudEvents attribute name"),
    "a dash": ({"trace-parent": "x"}, "'trace-parent' is not a CloudEvents attribute name"),
    "an underscore": ({"trace_parent": "x"}, "'trace_parent' is not a CloudEvents attribute"),
    "21 characters": ({"x" * 21: "x"}, f"'{'x' * 21}' is not a CloudEvents attribute name"),
    "non-ASCII": ({"caf\u00e9": "x"}, "'caf\u00e9' is not a CloudEvents attribute name"),
    "a trailing newline": ({"trace\n": "x"}, "'trace\\n' is not a CloudEvents attribute name"),
    "an object value": ({"trace": {"a": 1}}, "trace: Value error, an extension attribute is a"),
    "an array value": ({"trace": [1]}, "not an array"),
    "a null value": ({"trace": None}, "not null"),
    "a fraction": ({"trace": 1.5}, "not a number with a fraction"),
    "a 64-bit integer": ({"trace": 2**31}, "an Integer attribute is 32-bit"),
    "text/plain": (
        {"datacontenttype": "text/plain"},
        "datacontenttype: Value error, 'text/plain' is not JSON",
    ),
    "XML": ({"datacontenttype": "application/xml"}, "'application/xml' is not JSON"),
    "octets": ({"datacontenttype": "application/octet-stream"}, "is not JSON"),
    "a charset other than UTF-8": (
        {"datacontenttype": "application/json; charset=latin-1"},
        "JSON data is UTF-8, not latin-1",
    ),
    "a relative dataschema": ({"dataschema": "/schemas/v1"}, "dataschema: String should match"),
    "specversion 0.3": ({"specversion": "0.3"}, "specversion: Input should be '1.0'"),
}


@pytest.mark.parametrize(
    ("attributes", "reason"), REFUSED_ATTRIBUTES.values(), ids=list(REFUSED_ATTRIBUTES)
)
def test_attributes_cloudevents_does_not_allow_are_refused_with_a_reason(
    attributes: dict[str, Any], reason: str
) -> None:
    for base in (API, AI):
        with pytest.raises(InvalidEvent) as refused:
            parse_event(raw({**base, **attributes}))
        assert reason in refused.value.reason, refused.value.reason


CORE = {"specversion", "id", "source", "type", "time", "subject", "data"}
CORE |= {"datacontenttype", "dataschema"}
extension_names = st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True).filter(lambda n: n not in CORE)
extension_values = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00")),
    st.booleans(),
    st.integers(-(2**31), 2**31 - 1),
)


@given(base=st.sampled_from([API, AI]), name=extension_names, value=extension_values)
def test_any_well_named_extension_with_an_allowed_value_is_accepted(
    base: dict[str, Any], name: str, value: Any
) -> None:
    event = parse_event(raw({**base, name: value}))
    assert event.model_extra == {name: value}


@given(
    name=st.text(min_size=1, max_size=25).filter(
        lambda n: n not in CORE and not re.fullmatch(r"[a-z0-9]{1,20}", n)
    )
)
def test_any_other_attribute_name_is_refused(name: str) -> None:
    with pytest.raises(InvalidEvent) as refused:
        parse_event(raw({**API, name: "x"}))
    assert refused.value.code in {"schema_violation", "malformed_json"}


@given(
    value=st.one_of(
        st.none(),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text("abc", max_size=3), st.integers(), max_size=2),
        st.integers().filter(lambda n: not -(2**31) <= n < 2**31),
        st.decimals(allow_nan=False, allow_infinity=False).filter(lambda d: d != int(d)),
    )
)
def test_an_extension_value_without_a_cloudevents_type_is_refused(value: Any) -> None:
    literal = str(value) if isinstance(value, Decimal) else json.dumps(value)
    wire = raw({**API, "trace": "V"}).replace(b'"V"', literal.encode())
    with pytest.raises(InvalidEvent) as refused:
        parse_event(wire)
    assert "trace: Value error" in refused.value.reason, refused.value.reason


# ---------------------------------------------------------------------------- schemas/


def rendered() -> dict[str, str]:
    """What ``tally schemas export`` writes, file name → text."""
    return {
        name: json.dumps(schema, indent=2, sort_keys=True) + "\n"
        for name, schema in documents().items()
    }


def test_schemas_folder_is_current() -> None:
    expected = rendered()
    assert set(expected) == {
        "api.request.json",
        "ai.usage.json",
        "license.usage.json",
        "tally.void.json",
        "openapi.json",
        "asyncapi.json",
    }
    present = {path.name for path in SCHEMAS.glob("*.json")}
    stale = sorted(
        name
        for name, text in expected.items()
        if name not in present or (SCHEMAS / name).read_text(encoding="utf-8") != text
    )
    extra = sorted(present - set(expected))
    assert not stale and not extra, (
        f"schemas/ is stale (differs: {stale}; not generated: {extra}): "
        "run `tally schemas export` and commit the result"
    )


def test_schemas_describe_the_contract() -> None:
    for kind in ("api.request", "ai.usage", "license.usage"):
        schema = json_schemas()[f"{kind}.json"]
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["properties"]["type"]["const"] == kind
        assert schema["additionalProperties"] is False
        assert set(schema["required"]) == {
            "specversion",
            "id",
            "source",
            "time",
            "subject",
            "type",
            "data",
        }
        assert schema["properties"]["time"]["format"] == "date-time"
        assert {"datacontenttype", "dataschema"} <= set(schema["properties"])
        ((pattern, extension),) = schema["patternProperties"].items()
        named = ["traceparent", "x" * 20, "x" * 21, "Trace", "data", "time", "a-b"]
        assert [n for n in named if re.search(pattern, n)] == ["traceparent", "x" * 20]
        assert [t["type"] for t in extension["anyOf"]] == ["string", "boolean", "integer"]


def test_schemas_export_check_fails_on_a_stale_folder_and_passes_after_export(
    tmp_path: Path,
) -> None:
    from tally.entrypoints.cli import app

    runner = CliRunner()
    check = ["schemas", "export", "--check", "--out", str(tmp_path)]
    stale = runner.invoke(app, check)
    assert stale.exit_code != 0
    assert "run `tally schemas export`" in " ".join(stale.output.split())
    assert list(tmp_path.iterdir()) == []  # --check writes nothing

    exported = runner.invoke(app, ["schemas", "export", "--out", str(tmp_path)])
    assert exported.exit_code == 0, exported.output
    assert {p.name: p.read_text(encoding="utf-8") for p in tmp_path.iterdir()} == rendered()
    assert runner.invoke(app, check).exit_code == 0

    (tmp_path / "ai.usage.json").write_text("{}\n", encoding="utf-8")  # edited by hand
    edited = runner.invoke(app, check)
    assert edited.exit_code != 0
    assert "ai.usage.json" in edited.output
