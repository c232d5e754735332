"""Wire contract v1: the CloudEvents that integrations XADD (docs/content/integrate/wire-format.md).

These models are the single source of the JSON Schemas in ``schemas/``. Validation is
strict: unknown fields in ``data``, wrong types, naive timestamps, non-finite or negative
quantities and a JSON object with a repeated key are refused with a message naming the
field. At the top level, every CloudEvents 1.0 attribute is accepted: the optional core
ones and any well-named extension (kept in the raw bytes, not interpreted).

``id`` and ``source`` are opaque: two events are the same only when both are the same
sequence of code points (no Unicode normalization, no case folding).

JSON numbers are parsed as ``Decimal`` (never through ``float``) by ``parse_event``, so
``"quantity": 0.1`` means exactly one tenth.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from tally.domain.period import period_of

EVENT_FIELD = "event"  # a stream entry's one field: the event's JSON
DEFAULT_STREAM = "tally:usage"  # the stream key, unless configured otherwise
EVENT_TYPES = ("api.request", "ai.usage", "license.usage", "tally.void")
VOID_TYPE = "tally.void"  # a correction: takes back a metered event of the same source
MAX_REASON = 1000  # characters of a void's reason
MAX_QUANTITY = Decimal(10) ** 15
MAX_DECIMAL_PLACES = 12  # finer than any meter needs; bounds what NUMERIC must store
MAX_USERS = 10**7

DECIMAL_TEXT = r"^[0-9]+(\.[0-9]+)?$"
_decimal_text = re.compile(DECIMAL_TEXT)


def _plain_decimal(value: Any) -> Any:
    """A quantity given as a string is plain decimal digits: no sign, spaces, ``_`` or NaN."""
    if isinstance(value, str) and not _decimal_text.match(value):
        raise ValueError(f"a quantity string is plain decimal digits like '12.5', not {value!r}")
    return value


def storable_text(value: str) -> str:
    """Text PostgreSQL can keep: UTF-8 encodable (no lone surrogates) and without NUL."""
    if "\x00" in value:
        raise ValueError("text must not contain the NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("text must be valid Unicode (no lone surrogate \\uD800-\\uDFFF)") from exc
    return value


def _unstorable_text(value: Any) -> bool:
    if isinstance(value, str):
        try:
            storable_text(value)
        except ValueError:
            return True
        return False
    if isinstance(value, dict):
        return any(_unstorable_text(k) or _unstorable_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_unstorable_text(item) for item in value)
    return False


NonEmpty = Annotated[StrictStr, Field(min_length=1, max_length=256)]
Quantity = Annotated[
    Decimal,
    BeforeValidator(_plain_decimal),
    Field(ge=0, le=MAX_QUANTITY, allow_inf_nan=False, decimal_places=MAX_DECIMAL_PLACES),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": int(MAX_QUANTITY)},
                {"type": "string", "pattern": DECIMAL_TEXT},
            ],
            "description": f"at most {MAX_DECIMAL_PLACES} decimal places",
        }
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiRequestData(_Strict):
    oauth_client_id: NonEmpty
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    template_uri: Annotated[StrictStr, Field(min_length=1, max_length=2048)]
    status: Annotated[StrictInt, Field(ge=100, le=599)]
    client_kind: NonEmpty
    count: Annotated[StrictInt, Field(ge=1, le=10**9)] = 1


class AiUsageData(_Strict):
    feature: NonEmpty
    quantity: Quantity
    unit: NonEmpty
    user_id: NonEmpty | None = None


class LicenseUsageData(_Strict):
    license: Literal["communicate", "gc1", "gc2", "gc3"]
    model: Literal["named", "concurrent", "hourly"]
    users: Annotated[StrictInt, Field(ge=0, le=MAX_USERS)] | None = None
    hours: Quantity | None = None

    @model_validator(mode="after")
    def _count_matches_model(self) -> LicenseUsageData:
        if self.model == "hourly":
            if self.hours is None or self.users is not None:
                raise ValueError("hourly licenses report 'hours' (and no 'users')")
        elif self.users is None or self.hours is not None:
            raise ValueError(f"{self.model} licenses report 'users' (and no 'hours')")
        return self


class VoidData(_Strict):
    """What a ``tally.void`` event takes back: the key of a metered event, and why."""

    source: NonEmpty = Field(description="the voided event's source: the void's own source")
    id: NonEmpty = Field(description="the voided event's id")
    reason: Annotated[StrictStr, Field(min_length=1, max_length=MAX_REASON, pattern=r"\S")]


_extension_name = re.compile(r"[a-z0-9]{1,20}")  # fullmatch: no "$" before a newline
_MIN_INTEGER, _MAX_INTEGER = -(2**31), 2**31 - 1  # CloudEvents' Integer: 32-bit signed
_ABSOLUTE_URI = r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s]*$"


def _extension_value(value: Any) -> str | bool | int:
    """A CloudEvents String, Boolean or Integer; URI, URI-reference and Timestamp travel in
    JSON as strings. Objects, arrays, null and fractions have no CloudEvents type."""
    if isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        if not _MIN_INTEGER <= value <= _MAX_INTEGER:
            raise ValueError(f"an Integer attribute is 32-bit: {value} is out of range")
        return value
    raise ValueError(
        "an extension attribute is a string, boolean or integer (CloudEvents 1.0), "
        f"not {_json_kind(value)}"
    )


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return "an object" if isinstance(value, dict) else "an array"
    return "a number with a fraction"


ExtensionValue = Annotated[
    str | bool | int,
    PlainValidator(_extension_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "boolean"},
                {"type": "integer", "minimum": _MIN_INTEGER, "maximum": _MAX_INTEGER},
            ],
            "description": "a CloudEvents extension attribute: String, Boolean, Integer, "
            "URI, URI-reference or Timestamp",
        }
    ),
]

_JSON_MEDIA_TYPE = re.compile(r"application/(?:[a-z0-9!#$&^_.-]+\+)?json")


def _json_media(value: str) -> str:
    """``data`` is always JSON: ``application/json`` or a ``+json`` type, parameters allowed
    (a charset, if given, is UTF-8: the bytes are UTF-8 whatever a label says)."""
    media_type, *parameters = (part.strip() for part in value.split(";"))
    if not _JSON_MEDIA_TYPE.fullmatch(media_type.lower()):
        raise ValueError(
            f"{value!r} is not JSON: Tally's data is a JSON object "
            "(application/json or an application/...+json type)"
        )
    for parameter in parameters:
        name, equals, setting = parameter.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"malformed media type parameter {parameter!r} in {value!r}")
        if name.strip().lower() == "charset" and setting.strip().strip('"').lower() != "utf-8":
            raise ValueError(f"{value!r}: JSON data is UTF-8, not {setting.strip()}")
    return value


class _Envelope(_Strict):
    """The CloudEvents attributes: the required ones, Tally's required ``subject`` and
    ``time``, the optional core ones and extensions (any other well-named attribute)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, ExtensionValue] = Field(init=False)

    specversion: Literal["1.0"]
    id: NonEmpty
    source: NonEmpty
    time: AwareDatetime
    subject: NonEmpty
    datacontenttype: (
        Annotated[StrictStr, Field(min_length=1, max_length=256), AfterValidator(_json_media)]
        | None
    ) = Field(
        None,
        description="application/json (the default) or an application/...+json type; "
        "parameters allowed, a charset only utf-8",
    )
    dataschema: Annotated[StrictStr, Field(max_length=2048, pattern=_ABSOLUTE_URI)] | None = Field(
        None, description="an absolute URI"
    )

    @cached_property
    def utc_time(self) -> datetime:
        """Converted once: the parsed time's zone is pydantic's, slow to ask for its offset."""
        return self.time.astimezone(UTC)

    @property
    def period(self) -> str:
        """The billing period: the UTC calendar month, ``YYYY-MM``."""
        return period_of(self.utc_time)


class ApiRequestEvent(_Envelope):
    type: Literal["api.request"]
    data: ApiRequestData


class AiUsageEvent(_Envelope):
    type: Literal["ai.usage"]
    data: AiUsageData


class LicenseUsageEvent(_Envelope):
    type: Literal["license.usage"]
    data: LicenseUsageData


class VoidEvent(_Envelope):
    """A correction: ``subject`` is the voided event's organization."""

    type: Literal["tally.void"]
    data: VoidData


AnyEvent = ApiRequestEvent | AiUsageEvent | LicenseUsageEvent | VoidEvent
UsageEvent = Annotated[AnyEvent, Field(discriminator="type")]
EVENT_MODELS: dict[str, type[_Envelope]] = {
    "api.request": ApiRequestEvent,
    "ai.usage": AiUsageEvent,
    "license.usage": LicenseUsageEvent,
    VOID_TYPE: VoidEvent,
}
_adapter: TypeAdapter[AnyEvent] = TypeAdapter(UsageEvent)


class InvalidEvent(ValueError):
    """A stream entry that cannot be metered.

    ``code`` is the class of problem (stable, for grouping and alerting); ``reason`` says
    exactly what is wrong. Both go into the dead letter.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False)[:5]:
        loc = item["loc"][1:] if item["loc"] and item["loc"][0] in EVENT_TYPES else item["loc"]
        where = ".".join(str(p) for p in loc)
        parts.append(f"{where or 'event'}: {item['msg']}")
    return "schema violation: " + "; ".join(parts)


def decode_json(raw: bytes) -> dict[str, Any]:
    """Parse an event's JSON, numbers as ``Decimal``; refuse anything but an object, and an
    object with a repeated key (read last-wins, ``"count":1,"count":500`` would bill 500)."""
    try:
        text = raw.decode("utf-8")
        body = _decoder.decode(text)
    except UnicodeDecodeError as exc:
        raise InvalidEvent("malformed_json", f"malformed JSON: not UTF-8 ({exc.reason})") from exc
    except (ValueError, RecursionError) as exc:
        raise InvalidEvent("malformed_json", f"malformed JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidEvent(
            "malformed_json", f"malformed JSON: expected an object, got {type(body).__name__}"
        )
    data = body.get("data")
    if len(body) + (len(data) if isinstance(data, dict) else 0) != _key_ends(raw):
        # a repeated key, a deeper object or an escaped quote before a colon: parse again,
        # checking every object (the check costs only on suspicion)
        _unique_keys_decoder.decode(text)
    if b"\\u" in raw and _unstorable_text(body):  # only an escape can spell NUL or a surrogate
        raise InvalidEvent(
            "schema_violation",
            "schema violation: text must not contain NUL or a lone surrogate (\\u0000, \\ud800)",
        )
    return body


_JSON_WHITESPACE = b" \t\n\r"


def _key_ends(raw: bytes) -> int:
    """At least the number of keys in ``raw``: every key ends in a quote, maybe whitespace,
    and a colon; only an escaped quote in a string makes a false one. So when the parsed
    keys are as many, none was repeated. (Cheaper than a regular expression or a hook per
    object: the drain parses every event.)"""
    return raw.translate(None, _JSON_WHITESPACE).count(b'":')


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (RFC 8259 leaves repeats undefined)."""
    body = dict(pairs)
    if len(body) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidEvent(
                    "duplicate_key",
                    f"duplicate key {key!r} in a JSON object: which value is meant is ambiguous",
                )
            seen.add(key)
    return body


def _refuse_constant(name: str) -> None:
    raise ValueError(f"non-finite number {name}")


def _number(text: str) -> Decimal | int:
    """A JSON number with a fraction or exponent: exact, and an integer when it is one
    (JSON Schema's integer: ``2.0`` is 2, so ``"count": 2.0`` means two requests)."""
    value = Decimal(text)
    if value == value.to_integral_value() and value.adjusted() < 19:
        return int(value)
    return value


_decoder = json.JSONDecoder(parse_float=_number, parse_constant=_refuse_constant)
_unique_keys_decoder = json.JSONDecoder(
    parse_float=_number, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys
)


def validate_event(body: dict[str, Any]) -> AnyEvent:
    kind = body.get("type")
    if kind not in EVENT_MODELS:
        if "type" not in body:
            raise InvalidEvent("schema_violation", "schema violation: type: Field required")
        raise InvalidEvent(
            "unknown_type", f"unknown type {kind!r}: expected one of {', '.join(EVENT_TYPES)}"
        )
    try:
        event = _adapter.validate_python(body)
    except ValidationError as exc:
        _refuse_bad_names(body.keys() - _CORE_ATTRIBUTES)  # the clearer reason, if there is one
        raise InvalidEvent("schema_violation", _describe(exc)) from exc
    return _checked(event)


_CORE_ATTRIBUTES = frozenset(ApiRequestEvent.model_fields)


def _refuse_bad_names(extensions: Iterable[str]) -> None:
    """Any attribute beyond the core ones is an extension, named as CloudEvents says."""
    for name in sorted(extensions):
        if name == "data_base64":
            raise InvalidEvent(
                "schema_violation",
                "schema violation: data_base64: binary data is not accepted: "
                "Tally's data is a JSON object in 'data'",
            )
        if not _extension_name.fullmatch(name):
            raise InvalidEvent(
                "schema_violation",
                f"schema violation: {name!r} is not a CloudEvents attribute name "
                "(lower-case ASCII letters and digits, at most 20 characters)",
            )


def _checked(event: AnyEvent) -> AnyEvent:
    """What the models cannot say: extension names, and a time with a UTC instant."""
    if event.__pydantic_extra__:
        _refuse_bad_names(event.__pydantic_extra__)
    try:
        event.utc_time  # noqa: B018  (0001-01-01T00:00+14:00 has no UTC instant)
    except OverflowError as exc:
        raise InvalidEvent(
            "schema_violation", "schema violation: time: out of range once converted to UTC"
        ) from exc
    return event


def parse_event(raw: bytes) -> AnyEvent:
    """Parse and validate one event's bytes.

    Fast path: an ``api.request`` has no decimal field, so pydantic's own JSON parser
    (through ``float`` for numbers) cannot change its meaning; it validates in one pass.
    Everything else, and every failure (for its exact message), takes the exact path.
    """
    if b'"api.request"' in raw and b"\\u" not in raw:
        try:
            event = _adapter.validate_json(raw)
        except ValidationError:
            pass
        else:
            if isinstance(event, ApiRequestEvent) and _keys_of(event) == _key_ends(raw):
                return _checked(event)
    return validate_event(decode_json(raw))


def _keys_of(event: ApiRequestEvent) -> int:
    """How many different keys the parsed event has. Equal to ``_key_ends``: no key was
    repeated (pydantic's parser keeps the last of repeated keys silently)."""
    return len(event.model_fields_set) + len(event.data.model_fields_set)


_REQUIRED_ATTRIBUTES = frozenset({"specversion", "id", "source", "type", "time", "subject", "data"})


def optional_attributes(raw: bytes) -> dict[str, Any]:
    """A stored event's optional CloudEvents attributes and extensions, as it sent them."""
    return {k: v for k, v in decode_json(raw).items() if k not in _REQUIRED_ATTRIBUTES}


# Extensions: any well-named attribute that is not a core one.
_extension_property = f"^(?!(?:{'|'.join(sorted(_CORE_ATTRIBUTES))})$)[a-z0-9]{{1,20}}$"


def json_schemas() -> dict[str, dict[str, Any]]:
    """One JSON Schema per event type, keyed by file name (what ``schemas/`` holds)."""
    out = {}
    for kind, model in EVENT_MODELS.items():
        schema = model.model_json_schema(mode="validation")
        schema["patternProperties"] = {_extension_property: schema.pop("additionalProperties")}
        schema["additionalProperties"] = False
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://tally.dev/schemas/v1/{kind}.json"
        schema["title"] = f"Tally {kind} event (wire contract v1)"
        what = (
            "A 'tally.void' correction: it takes back the metered event data.source/data.id, "
            "which must be of this event's own source and organization (subject)"
            if kind == VOID_TYPE
            else f"One '{kind}' usage event"
        )
        schema["description"] = (
            f"{what}: the value of the 'event' field of a stream entry, "
            "a CloudEvents 1.0 structured event in UTF-8 JSON. (source, id) is its "
            "idempotency key, forever. Optional CloudEvents attributes and extensions "
            "are accepted; a JSON object with a repeated key is refused."
        )
        out[f"{kind}.json"] = schema
    return out
