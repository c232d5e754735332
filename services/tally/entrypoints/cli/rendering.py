"""An invoice as CSV or a standalone HTML page, from its fixed JSON shape. Pure."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from html import escape
from typing import Any

from tally.adapters.postgres.invoices import Invoice

COLUMNS = ("meter", "description", "allocation", "used", "overage", "unit_price", "amount")


def _text(value: Any) -> str:
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def rows(invoice: Invoice) -> list[dict[str, str]]:
    """One row per line, per AI feature, per adjustment, and the total: what CSV and the
    table show."""
    doc = invoice.document
    out = []
    for line in doc["lines"]:
        out.append({"kind": "line", **{column: _text(line[column]) for column in COLUMNS}})
        if line["meter"] == "ai_tokens":
            out.extend(
                {"kind": "feature", "meter": "ai_tokens", "description": feature,
                 "used": _text(tokens)}
                for feature, tokens in sorted(invoice.features.items())
            )  # fmt: skip
    for adjustment in doc["adjustments"]:
        out.append(
            {
                "kind": "adjustment",
                "meter": adjustment["meter"],
                "description": f"{adjustment['invoice']}: {adjustment['description']}",
                "amount": _text(adjustment["amount"]),
            }
        )
    out.append({"kind": "total", "description": doc["currency"], "amount": _text(doc["total"])})
    return [{column: row.get(column, "") for column in ("kind", *COLUMNS)} for row in out]


def to_csv(invoice: Invoice) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=("kind", *COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(invoice))
    return buffer.getvalue()


def to_html(invoice: Invoice) -> str:
    doc = invoice.document
    title = f"Invoice {doc['number']}: {doc['org']}, {doc['period']}"
    header = "".join(f"<th>{escape(column)}</th>" for column in ("kind", *COLUMNS))
    body = "\n".join(
        "<tr>" + "".join(f"<td>{escape(value)}</td>" for value in row.values()) + "</tr>"
        for row in rows(invoice)
    )
    entries = "\n".join(
        f"<li>{escape(where)}: entries "
        + ", ".join(escape(f"{e['id']} ({e['kind']})") for e in listed)
        + "</li>"
        for where, listed in sorted(invoice.entries.items())
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em}}td:nth-child(n+4){{text-align:right}}</style>
</head><body>
<h1>{escape(title)}</h1>
<p>Status: {escape(doc["status"])} &middot; currency {escape(doc["currency"])} &middot;
issued {escape(invoice.issued_at.isoformat())}</p>
<table><thead><tr>{header}</tr></thead><tbody>
{body}
</tbody></table>
<h2>Entries billed</h2><ul>
{entries}
</ul></body></html>
"""
