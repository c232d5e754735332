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
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
HEADER_PREFIX = "ce-"
REQUIRED = ("specversion", "id", "source", "type")


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


def parse(content_type: str | None, headers: Mapping[str, str], body: bytes) -> list[Incoming]:
    """The events of a request (``headers`` with lower-case names), in order."""
    kind = media_type(content_type)
    if kind == STRUCTURED:
        return [_event(body)]
    if kind == BATCH:
        return _batch(body)
    if HEADER_PREFIX + "specversion" in headers:
        return [_event(_binary(kind, headers, body))]
    raise Refused(
        "not_a_cloudevent",
        f"not a CloudEvent: send Content-Type {STRUCTURED} (one event), {BATCH} (a JSON "
        f"array of events), or the event's attributes as ce-* headers with its data as a "
        f"JSON body (binary mode); got Content-Type {content_type or 'none'}",
    )


def _event(raw: bytes, where: str = "the body") -> Incoming:
    try:
        text = raw.decode("utf-8")
        start = _skip(text, 0)
        event, end = _scanner.raw_decode(text, start)
        if text[_skip(text, end) :]:
            raise ValueError(f"text after the event at {end}")
    except UnicodeDecodeError as exc:
        raise Refused(
            "malformed_json", f"{where}: malformed JSON: not UTF-8 ({exc.reason})"
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise Refused("malformed_json", f"{where}: malformed JSON: {exc}") from exc
    return _checked(event, raw, where)


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
    return Incoming(event["source"], event["id"], raw)


def _batch(body: bytes) -> list[Incoming]:
    """Each element of the array, as the exact bytes it was written with."""
    try:
        text = body.decode("utf-8")
        start = _skip(text, 0)
        if text[start : start + 1] != "[":
            raise Refused("malformed_json", "a batch is a JSON array of events")
        events: list[Incoming] = []
        errors: list[dict[str, Any]] = []
        at = _skip(text, start + 1)
        while text[at : at + 1] != "]":
            event, end = _scanner.raw_decode(text, at)
            index = len(events) + len(errors)
            try:
                events.append(_checked(event, text[at:end].encode(), f"event {index}"))
            except Refused as exc:
                errors.append({"index": index, "code": exc.code, "message": exc.message})
            at = _skip(text, end)
            if text[at : at + 1] == ",":
                at = _skip(text, at + 1)
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
    if errors:
        raise Refused(
            errors[0]["code"],
            f"{len(errors)} of {len(events) + len(errors)} events refused; nothing was "
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


def _binary(kind: str, headers: Mapping[str, str], body: bytes) -> bytes:
    """A binary-mode request as the structured event it stands for."""
    if kind and kind != "application/json" and not kind.endswith("+json"):
        raise Refused(
            "not_json", f"binary mode: the data must be JSON (Content-Type {kind} is not)"
        )
    attributes = {
        name[len(HEADER_PREFIX) :]: unquote(value)
        for name, value in headers.items()
        if name.startswith(HEADER_PREFIX) and len(name) > len(HEADER_PREFIX)
    }
    if kind:
        attributes["datacontenttype"] = kind
    ordered = {name: attributes[name] for name in REQUIRED if name in attributes}
    ordered |= {name: attributes[name] for name in sorted(attributes) if name not in ordered}
    head = json.dumps(ordered, ensure_ascii=False, separators=(",", ":"))
    data = body.strip()
    if not data:
        return head.encode()
    return head[:-1].encode() + b',"data":' + data + b"}"
