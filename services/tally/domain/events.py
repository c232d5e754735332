"""Wire contract v1: the CloudEvents that integrations XADD (DESIGN §2).

These models are the single source of the JSON Schemas in ``schemas/``. Validation is
strict: unknown fields, wrong types, naive timestamps and non-finite or negative
quantities are refused with a message naming the field.

JSON numbers are parsed as ``Decimal`` (never through ``float``) by ``parse_event``, so
``"quantity": 0.1`` means exactly one tenth.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

EVENT_TYPES = ("api.request", "ai.usage", "license.usage")
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


class _Envelope(_Strict):
    specversion: Literal["1.0"]
    id: NonEmpty
    source: NonEmpty
    time: AwareDatetime
    subject: NonEmpty
    datacontenttype: Literal["application/json"] | None = None

    @property
    def utc_time(self) -> datetime:
        return self.time.astimezone(UTC)

    @property
    def period(self) -> str:
        """The billing period: the UTC calendar month, ``YYYY-MM``."""
        return period_of(self.utc_time)


def period_of(utc_time: datetime) -> str:
    return f"{utc_time.year:04d}-{utc_time.month:02d}"


class ApiRequestEvent(_Envelope):
    type: Literal["api.request"]
    data: ApiRequestData


class AiUsageEvent(_Envelope):
    type: Literal["ai.usage"]
    data: AiUsageData


class LicenseUsageEvent(_Envelope):
    type: Literal["license.usage"]
    data: LicenseUsageData


UsageEvent = Annotated[
    ApiRequestEvent | AiUsageEvent | LicenseUsageEvent, Field(discriminator="type")
]
EVENT_MODELS: dict[str, type[_Envelope]] = {
    "api.request": ApiRequestEvent,
    "ai.usage": AiUsageEvent,
    "license.usage": LicenseUsageEvent,
}
_adapter: TypeAdapter[ApiRequestEvent | AiUsageEvent | LicenseUsageEvent] = TypeAdapter(UsageEvent)


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
    """Parse an event's JSON, numbers as ``Decimal``; refuse anything but an object."""
    try:
        body = _decoder.decode(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidEvent("malformed_json", f"malformed JSON: not UTF-8 ({exc.reason})") from exc
    except (ValueError, RecursionError) as exc:
        raise InvalidEvent("malformed_json", f"malformed JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidEvent(
            "malformed_json", f"malformed JSON: expected an object, got {type(body).__name__}"
        )
    if b"\\u" in raw and _unstorable_text(body):  # only an escape can spell NUL or a surrogate
        raise InvalidEvent(
            "schema_violation",
            "schema violation: text must not contain NUL or a lone surrogate (\\u0000, \\ud800)",
        )
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


def validate_event(body: dict[str, Any]) -> ApiRequestEvent | AiUsageEvent | LicenseUsageEvent:
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
        raise InvalidEvent("schema_violation", _describe(exc)) from exc
    return _in_utc(event)


AnyEvent = ApiRequestEvent | AiUsageEvent | LicenseUsageEvent


def _in_utc(event: AnyEvent) -> AnyEvent:
    try:
        event.utc_time  # noqa: B018  (0001-01-01T00:00+14:00 has no UTC instant)
    except OverflowError as exc:
        raise InvalidEvent(
            "schema_violation", "schema violation: time: out of range once converted to UTC"
        ) from exc
    return event


def parse_event(raw: bytes) -> ApiRequestEvent | AiUsageEvent | LicenseUsageEvent:
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
            if isinstance(event, ApiRequestEvent):
                return _in_utc(event)
    return validate_event(decode_json(raw))


def json_schemas() -> dict[str, dict[str, Any]]:
    """One JSON Schema per event type, keyed by file name (what ``schemas/`` holds)."""
    out = {}
    for kind, model in EVENT_MODELS.items():
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://tally.dev/schemas/v1/{kind}.json"
        schema["title"] = f"Tally {kind} event (wire contract v1)"
        schema["description"] = (
            f"One '{kind}' usage event: the value of the 'event' field of a stream entry, "
            "a CloudEvents 1.0 structured event in UTF-8 JSON. (source, id) is its "
            "idempotency key, forever."
        )
        out[f"{kind}.json"] = schema
    return out
