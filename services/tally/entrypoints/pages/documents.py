"""Invoice documents and dead letters' bytes as the pages hand them out: the invoice as PDF
(the invoice page's own HTML under its print stylesheet, laid out by WeasyPrint, so the
download and a browser's "Save as PDF" are one design), its due date, and a hex dump."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from weasyprint import HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse

HEX_ROW = 16  # bytes a line of the hex dump
HEX_SHOWN = 4096  # bytes the hex view shows (an oversized payload is up to megabytes)
BASE = "https://tally.invalid/"  # the pages' paths resolve under it; nothing is fetched there


class StaticOnly(URLFetcher):  # type: ignore[misc]
    """Serves the document's stylesheet and images from the pages' static folder and nothing
    else: laying out a PDF never opens a network connection or another file."""

    def __init__(self, static: Path) -> None:
        super().__init__()
        self.static = static.resolve()

    def fetch(self, url: str, headers: object = None) -> URLFetcherResponse:
        path = urlsplit(url).path
        _, marker, rest = path.partition("/static/")
        found = (self.static / rest).resolve()
        if not (url.startswith(BASE) and marker and found.is_relative_to(self.static)):
            raise ValueError(f"an invoice document reads only the pages' own files, not {url}")
        kind = "text/css" if found.suffix == ".css" else "image/svg+xml"
        return URLFetcherResponse(url, found.read_bytes(), {"Content-Type": kind})


def _render(html: bytes, static: Path) -> bytes:
    pdf: bytes = HTML(string=html, base_url=BASE, url_fetcher=StaticOnly(static)).write_pdf()
    return pdf


async def pdf(html: bytes, static: Path) -> bytes:
    """The page ``html`` printed to A4 (its ``@media print`` rules), off the event loop."""
    return await asyncio.to_thread(_render, html, static)


def due_date(issued_at: datetime, payment_days: int) -> date:
    return (issued_at + timedelta(days=payment_days)).date()


def hex_dump(raw: bytes) -> list[tuple[str, str, str]]:
    """Each row of the first ``HEX_SHOWN`` bytes: the offset, the bytes in hex, and the
    printable ASCII ('.' for the rest)."""
    return [
        (
            f"{start:08x}",
            " ".join(f"{byte:02x}" for byte in raw[start : start + HEX_ROW]),
            "".join(chr(b) if 32 <= b < 127 else "." for b in raw[start : start + HEX_ROW]),
        )
        for start in range(0, min(len(raw), HEX_SHOWN), HEX_ROW)
    ]
