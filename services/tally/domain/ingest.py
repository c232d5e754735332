"""Usage events over HTTP: a request in one of the CloudEvents HTTP binding's three modes
turned into the wire contract's stream entries, or refused whole.

- **structured** (``Content-Type: application/cloudevents+json``): the body is the event,
  kept byte for byte;
- **batch** (``application/cloudevents-batch+json``): a JSON array of structured events,
  each kept byte for byte as it was written in the array;
- **binary** (any other ``Content-Type``, with ``ce-specversion``): the attributes are the
  ``ce-*`` headers (percent-decoded), the body is ``data`` (JSON), and the event is written
  as structured JSON: the four required attributes first, the others by name, ``data``
  last, so the same request always gives the same bytes (a retry is a duplicate, counted
  once).

The gateway refuses only what is not JSON or not a CloudEvent (the attributes every event
needs, ``specversion`` 1.0, an object with no repeated key): everything else, a missing
``subject`` or a wrong ``data``, is judged by the consumer as for any producer, with a
dead letter the producer can look up.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
HEADER_PREFIX = "ce-"
REQUIRED = ("specversion", "id", "source", "type")
ATTRIBUTE_NAME = re.compile(r"[a-z0-9]{1,20}")  # CloudEvents' attribute names
JSON_WHITESPACE = b" \t\n\r"
MAX_ERRORS = 100  # refused events of a batch listed in the answer


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object read with no key twice (``"count":1,"count":500`` is ambiguous)."""
    found = dict(pairs)
    if len(found) != len(pairs):
        repeated = next(key for key, n in Counter(key for key, _ in pairs).items() if n > 1)
        raise ValueError(f"the key {repeated!r} appears twice in one object")
    return found


# One pass over the text: where each event ends, and that it is JSON with no repeated key
# (numbers are not read here: the consumer reads them exactly, from the bytes kept).
_scanner = json.JSONDecoder(object_pairs_hook=_unique_keys)


@dataclass(frozen=True)
class Incoming:
    """One event as the stream gets it: its idempotency key and its ``event`` field."""

    source: str
    id: str
    raw: bytes
    subject: str | None  # the organization billed, if the event names one


@dataclass
class Refused(ValueError):
    """The request is not JSON or not CloudEvents: nothing of it is written."""

    code: str
    message: str
    errors: list[dict[str, Any]] = field(default_factory=list)  # per event of a batch

    def __str__(self) -> str:
        return self.message


def media_type(content_type: str | None) -> str:
    return (content_type or "").partition(";")[0].strip().lower()


def parse(
    content_type: str | None,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    max_events: int,
) -> list[Incoming]:
    """The events of a request (``headers``: every header as sent, lower-case names, repeats
    included), in order; at most ``max_events`` (a batch is not read past one more)."""
    kind = media_type(content_type)
    if kind == STRUCTURED:
        return [_event(body)]
    if kind == BATCH:
        return _batch(body, max_events)
    if any(name == HEADER_PREFIX + "specversion" for name, _ in headers):
        return [_event(_binary(kind, headers, body))]
    raise Refused(
        "not_a_cloudevent",
        f"not a CloudEvent: send Content-Type {STRUCTURED} (one event), {BATCH} (a JSON "
        f"array of events), or the event's attributes as ce-* headers with its data as a "
        f"JSON body (binary mode); got Content-Type {content_type or 'none'}",
    )


def _event(raw: bytes, where: str = "the body") -> Incoming:
    return _checked(_one_value(raw, where), raw, where)


def _one_value(raw: bytes, where: str) -> Any:
    """The one JSON value ``raw`` holds (whitespace around it allowed, nothing else)."""
    try:
        text = raw.decode("utf-8")
        value, end = _scanner.raw_decode(text, _skip(text, 0))
        if text[_skip(text, end) :]:
            raise ValueError(f"text after the value at {end}")
    except UnicodeDecodeError as exc:
        raise Refused(
            "malformed_json", f"{where}: malformed JSON: not UTF-8 ({exc.reason})"
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise Refused("malformed_json", f"{where}: malformed JSON: {exc}") from exc
    return value


def _checked(event: Any, raw: bytes, where: str) -> Incoming:
    """``event`` if it is a CloudEvent 1.0 object (its other attributes are the consumer's)."""
    if not isinstance(event, dict):
        raise Refused(
            "malformed_json",
            f"{where}: malformed JSON: expected an object, got {type(event).__name__}",
        )
    missing = [name for name in REQUIRED if not isinstance(event.get(name), str)]
    missing += [name for name in REQUIRED if name not in missing and not event[name]]
    if missing:
        raise Refused(
            "not_a_cloudevent",
            f"{where}: not a CloudEvent: {', '.join(missing)} must be a non-empty string",
        )
    if event["specversion"] != "1.0":
        raise Refused(
            "not_a_cloudevent",
            f"{where}: specversion {event['specversion']!r}: only CloudEvents 1.0 is accepted",
        )
    subject = event.get("subject")
    return Incoming(
        event["source"], event["id"], raw, subject if isinstance(subject, str) else None
    )


def _batch(body: bytes, max_events: int) -> list[Incoming]:
    """Each element of the array, as the exact bytes it was written with; every refused
    one named (the first ``MAX_ERRORS``), and no more than ``max_events`` read."""
    try:
        text = body.decode("utf-8")
        start = _skip(text, 0)
        if text[start : start + 1] != "[":
            raise Refused("malformed_json", "a batch is a JSON array of events")
        events: list[Incoming] = []
        errors: list[dict[str, Any]] = []
        refused = 0
        at = _skip(text, start + 1)
        while text[at : at + 1] != "]":
            index = len(events) + refused
            if index == max_events:
                raise Refused("too_many_events", f"more than {max_events} events in one request")
            event, end = _scanner.raw_decode(text, at)
            try:
                events.append(_checked(event, text[at:end].encode(), f"event {index}"))
            except Refused as exc:
                refused += 1
                if len(errors) < MAX_ERRORS:
                    errors.append({"index": index, "code": exc.code, "message": exc.message})
            at = _skip(text, end)
            if text[at : at + 1] == ",":
                at = _skip(text, at + 1)
                if text[at : at + 1] == "]":
                    raise Refused("malformed_json", f"malformed JSON: a value expected at {at}")
            elif text[at : at + 1] != "]":
                raise Refused("malformed_json", f"malformed JSON: ',' or ']' expected at {at}")
        if text[_skip(text, at + 1) :]:
            raise Refused("malformed_json", "malformed JSON: text after the batch's array")
    except UnicodeDecodeError as exc:
        raise Refused("malformed_json", f"malformed JSON: not UTF-8 ({exc.reason})") from exc
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, Refused):
            raise
        raise Refused("malformed_json", f"malformed JSON: {exc}") from exc
    if refused:
        listed = "" if refused <= MAX_ERRORS else f" (the first {MAX_ERRORS} listed)"
        raise Refused(
            errors[0]["code"],
            f"{refused} of {len(events) + refused} events refused{listed}; nothing was "
            f"written: {errors[0]['message']}",
            errors,
        )
    if not events:
        raise Refused("empty_batch", "the batch holds no event")
    return events


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\n\r":
        at += 1
    return at


def _binary(kind: str, headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
    """A binary-mode request as the structured event it stands for."""
    if kind and kind != "application/json" and not kind.endswith("+json"):
        raise Refused(
            "not_json", f"binary mode: the data must be JSON (Content-Type {kind} is not)"
        )
    attributes: dict[str, str] = {}
    for header, value in headers:
        if not header.startswith(HEADER_PREFIX):
            continue
        name = header[len(HEADER_PREFIX) :]
        if not ATTRIBUTE_NAME.fullmatch(name):
            raise Refused(
                "not_a_cloudevent",
                f"header {header}: an attribute's name is 1 to 20 lower-case letters or digits",
            )
        if name in attributes:  # which one would count is a guess: refused
            raise Refused("not_a_cloudevent", f"header {header} is sent twice")
        attributes[name] = _header_value(header, value)
    if kind:
        attributes["datacontenttype"] = kind
    ordered = {name: attributes[name] for name in REQUIRED if name in attributes}
    ordered |= {name: attributes[name] for name in sorted(attributes) if name not in ordered}
    head = json.dumps(ordered, ensure_ascii=False, separators=(",", ":"))
    if not body.strip(JSON_WHITESPACE):
        return head.encode()
    _one_value(body, "the data")  # one JSON value: nothing spliced after it
    return head[:-1].encode() + b',"data":' + body.strip(JSON_WHITESPACE) + b"}"


def _header_value(header: str, value: str) -> str:
    """A header's value, percent-decoded as the binding says (UTF-8, and only valid escapes:
    two different headers never decode to one value)."""
    if not value.isascii() or not value.isprintable():
        raise Refused("not_a_cloudevent", f"header {header}: printable ASCII only (%-encode)")
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError as exc:
        raise Refused(
            "not_a_cloudevent", f"header {header}: %-escapes that are not UTF-8 ({exc.reason})"
        ) from exc
