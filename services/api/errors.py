"""One error shape for every failure, `{"error": {"status", "code", "message"}}`, and the
OpenAPI description of it (`responses=errors(404, 422)`), so what is documented is what is sent:
FastAPI's own `{"detail": ...}` validation schema never appears."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.schemas import ErrorResponse

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "invalid_request",
    429: "too_many_requests",
}
WHEN = {
    400: "The body is not what the route takes.",
    401: "No bearer token, or an unknown or revoked one.",
    403: "The token's role may not use this route.",
    404: "No such resource.",
    413: "The request body is over the size limit.",
    422: "A parameter or the body is invalid; `message` lists each problem.",
    429: "Too many failed authentications from this address; retry after `Retry-After` s.",
    503: "The service cannot do this now.",
}
# What the client is told about a failure the server did not expect (the log has the rest).
UNEXPECTED = "internal server error"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
}


def error_response(
    status: int, message: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    code = ERROR_CODES.get(status, "server_error" if status >= 500 else "error")
    return JSONResponse(
        {"error": {"status": status, "code": code, "message": message}},
        status_code=status,
        headers=(_CHALLENGE if status == 401 else {}) | (headers or {}),
    )


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entries for these error statuses, all with `ErrorResponse`.
    A route that can answer 401 can also answer 429: the failed-authentication limit is
    checked before the token."""
    if 401 in statuses:
        statuses = (*statuses, 429)
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorResponse, "description": WHEN[status]}
        if status in _HEADERS:
            entry["headers"] = _HEADERS[status]
        documented[status] = entry
    return documented


async def http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, exc.detail, exc.headers)


async def server_error(_request: Request, _exc: Exception) -> JSONResponse:
    """An unexpected failure: the one error shape with a generic message, never a traceback
    or plain text (the server's log keeps the exception)."""
    return error_response(500, UNEXPECTED)


async def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    issues = [{"location": list(e["loc"]), "message": e["msg"]} for e in exc.errors()]
    return error_response(422, issues)
