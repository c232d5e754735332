"""MkDocs hook: the table of ``tally ledger verify``'s checks, read from the registry the
command runs, so the docs never list them by hand."""

from __future__ import annotations

from typing import Any

from tally.adapters.postgres.verification import CHECKS

MARKER = "<!-- verify-checks -->"


def on_page_markdown(markdown: str, **_: Any) -> str:
    if MARKER not in markdown:
        return markdown
    rows = ["| check | what it re-derives | its findings |", "|---|---|---|"]
    rows += [
        f"| `{c.name}` | {c.promise[0].upper()}{c.promise[1:]}. | "
        + ", ".join(f"`{kind}`" for kind in c.findings)
        + " |"
        for c in CHECKS.values()
    ]
    return markdown.replace(MARKER, "\n".join(rows))
