"""Every error answers JSON ``{"code": ..., "message": ...}`` with a stable code, FastAPI's
own 404s, 405s and 422s included, and an unexpected exception ``internal`` with its
``request_id`` (``tally.entrypoints.failures``)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

# The codes a client may rely on, by HTTP status (documented in docs/content/reference/http-api.md).
CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal",
}


class ErrorBody(BaseModel):
    """What every error answers (the OpenAPI document's ``ErrorBody``)."""

    code: str  # stable: one of CODES' values, or a route's own (not_sealed, invalid_cursor)
    message: str
    request_id: str | None = None  # on a 500: what the server's log names the failure by
    errors: list[dict[str, Any]] | None = None  # a batch's refused events: index, code, message


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route, for the OpenAPI document (FastAPI's default 422 shape
    is not what this API answers)."""
    return {
        status: {
            "model": ErrorBody,
            "description": "`internal`: unexpected, logged under its `request_id`"
            if status == 500
            else f"`{CODES[status]}` (or a route's own code)",
        }
        for status in statuses
    }


# Every route can answer these; one that needs a key also 401, 403 and 429.
PUBLIC_ERRORS = documented(404, 422, 500)
KEYED_ERRORS = documented(401, 403, 404, 422, 429, 500)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES[status]
        self.message = message
        self.headers = headers
        self.errors = errors


def answer(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers)


def internal(request: Request, request_id: str) -> JSONResponse:
    """The answer to an unexpected exception (``failures.LastResort``), logged under
    ``request_id``."""
    body = ErrorBody(
        code=CODES[500],
        message=f"unexpected error: the server's log names it request {request_id}",
        request_id=request_id,
    )
    return JSONResponse(body.model_dump(), status_code=500)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return answer(exc.status, exc.code, exc.message, exc.headers, exc.errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such path: {request.url.path}"
        return answer(exc.status_code, CODES.get(exc.status_code, "error"), message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        return answer(422, "invalid_request", problems)
