"""Log lines: readable text, or one JSON object per line (``TALLY_LOG_FORMAT=json``) that a
log pipeline indexes without parsing prose.

A JSON line carries ``time`` (UTC, RFC 3339), ``level``, ``logger``, ``message``, the
``trace_id``/``span_id`` of the span it was written in, and whatever the call passed as
``extra={"context": {...}}`` (a batch's first entry id, its counts; a request's id). No
secret reaches either format: a URL's password and an API key's secret are masked.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

# a URL's user:password@ (or :password@) and password= parameter, the secret half of an API
# key (tally_<id>_<secret>), a webhook's signing secret (whsec_<base64>)
_SECRETS = (
    (re.compile(r"(?<=://)([^:/@\s]*):([^@\s]+)@"), r"\1:***@"),
    (re.compile(r"(?i)\b(password|passwd|pass)=[^&\s]+"), r"\1=***"),
    (re.compile(r"\b(tally_[0-9a-f]{8,})_[A-Za-z0-9_-]+"), r"\1_***"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), "whsec_***"),
)


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactingText(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = format(span.trace_id, "032x")
            line["span_id"] = format(span.span_id, "016x")
        context = getattr(record, "context", None)
        if isinstance(context, dict):
            line.update(context)
        if record.exc_info:
            line["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


def configure(log_format: str, level: int = logging.INFO) -> None:
    """The root logger's one handler, on standard error, in the chosen format."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonLines()
        if log_format == "json"
        else RedactingText("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
