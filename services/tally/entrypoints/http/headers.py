"""Security headers on every answer of ``tally serve``, API and pages alike.

Everywhere: no MIME sniffing, no framing, the Referer only to the same origin. The API's
answers and every page (signed-in ones hold organizations' figures) are never stored by a
browser or a shared cache: ``Cache-Control: no-store``; only ``/ui/static`` is cacheable.
Pages get a strict Content-Security-Policy (scripts and styles from ``/ui/static`` only:
the templates hold no inline script, style or event handler), the API one that allows
nothing at all (JSON and CSV need none).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGES_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
EVERYWHERE = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
NO_STORE = (b"cache-control", b"no-store")


class SecurityHeaders:
    """Pure ASGI (no buffering): the headers go on each answer's start, streams stay streams."""

    def __init__(self, app: ASGIApp, pages: str = "/ui", static: str = "/ui/static/") -> None:
        self.app, self.pages, self.static = app, pages, static

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        page = path == self.pages or path.startswith(self.pages + "/")
        added = [
            *EVERYWHERE,
            (b"content-security-policy", (PAGES_CSP if page else API_CSP).encode()),
            *([] if path.startswith(self.static) else [NO_STORE]),
        ]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *(header for header in added if header[0] not in present),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)
