"""Values as JSON and CSV show them: decimals as exact strings, instants in ISO 8601."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from tally.adapters.postgres.verification import Verification


def plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def json_line(value: Any) -> str:
    """One line of JSON Lines (a statement's): compact, UTF-8, decimals as exact strings."""
    return json.dumps(plain(value), ensure_ascii=False, separators=(",", ":")) + "\n"


def verification_summary(result: Verification) -> dict[str, Any]:
    """``tally ledger verify --format json`` and ``GET /v1/verify``: counts and findings."""
    return {
        "ok": result.ok,
        "entries": result.entries,
        "lines": result.lines,
        "events": result.events,
        "lanes": result.lanes,
        "heads": result.heads,
        "tallies": result.tallies,
        "tally_heads": result.tally_heads,
        "seals": result.seals,
        "findings": [{"check": f.check, "detail": f.detail} for f in result.findings],
    }
