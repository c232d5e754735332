"""The last resort of the API and the pages: an exception no route expected is logged with
a request id and answered with that id (the API's JSON ``internal``, the pages' error
page), never Starlette's bare text/plain 500. Every answer names its request id in
``X-Request-Id``, so that a client's report finds its log lines.

A pure ASGI middleware, not an exception handler: Starlette's ServerErrorMiddleware answers
with a handler's response but then raises the exception again, to the server; this one
answers and is done. The pages app (mounted in the API's) has its own, which keeps the
request id the API's gave the request.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-Id"
log = logging.getLogger("tally.api")


class LastResort:
    def __init__(self, app: ASGIApp, answer: Callable[[Request, str], Response]) -> None:
        self.app = app
        self.answer = answer  # the answer to a failed request, given its request id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id: str = scope.setdefault("state", {}).setdefault("request_id", uuid.uuid4().hex)
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                if HEADER not in headers:
                    headers[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            log.exception("request %s failed: %s %s", request_id, scope["method"], scope["path"])
            if started:  # the answer is under way: only dropping the connection tells the client
                raise
            await self.answer(Request(scope), request_id)(scope, receive, sending)
