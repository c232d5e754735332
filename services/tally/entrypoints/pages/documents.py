"""Invoice documents and dead letters' bytes as the pages hand them out: the invoice as PDF
(the invoice page's own HTML under its print stylesheet, laid out by WeasyPrint, so the
download and a browser's "Save as PDF" are one design), its due date, and a hex dump."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HEX_ROW = 16  # bytes a line of the hex dump
HEX_SHOWN = 4096  # bytes the hex view shows (an oversized payload is up to megabytes)
BASE = "https://tally.invalid/"  # the pages' paths resolve under it; nothing is fetched there


class PdfUnavailable(RuntimeError):
    """WeasyPrint cannot lay out PDFs here: the system lacks the Pango library it loads."""


@cache
def _weasyprint() -> Any:
    """WeasyPrint, imported on the first PDF asked for: it loads the system's Pango when
    imported, and a server (or a test run) without Pango must still start and serve every
    other page."""
    try:
        import weasyprint
        import weasyprint.urls
    except OSError as exc:
        raise PdfUnavailable(
            "this server cannot lay out PDFs: WeasyPrint needs the Pango library (Debian: "
            "apt install libpango-1.0-0 libpangoft2-1.0-0); print the invoice page instead "
            f"({exc})"
        ) from exc
    return weasyprint


def _render(html: bytes, static: Path) -> bytes:
    weasyprint = _weasyprint()
    root = static.resolve()

    class StaticOnly(weasyprint.urls.URLFetcher):  # type: ignore[misc,name-defined]
        """Serves the document's stylesheet and images from the pages' static folder and
        nothing else: laying out a PDF never opens a network connection or another file."""

        def fetch(self, url: str, headers: object = None) -> Any:
            path = urlsplit(url).path
            _, marker, rest = path.partition("/static/")
            found = (root / rest).resolve()
            if not (url.startswith(BASE) and marker and found.is_relative_to(root)):
                raise ValueError(f"an invoice document reads only the pages' own files, not {url}")
            kind = "text/css" if found.suffix == ".css" else "image/svg+xml"
            return weasyprint.urls.URLFetcherResponse(
                url, found.read_bytes(), {"Content-Type": kind}
            )

    document = weasyprint.HTML(string=html, base_url=BASE, url_fetcher=StaticOnly())
    pdf: bytes = document.write_pdf()
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
