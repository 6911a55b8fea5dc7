"""Typed domain errors rendered as RFC 9457 problem details with a stable `code`."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://voltway.dev/problems/"
log = logging.getLogger("app.errors")


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details, plus our stable machine `code`."""

    type: str
    title: str
    status: int
    code: str
    detail: str = ""
    instance: str | None = None
    errors: list[FieldError] | None = None


def problem_doc(description: str) -> ResponseSpec:
    """An OpenAPI response of a route: a problem detail (RFC 9457) saying when it comes."""
    return ResponseSpec(
        data_container=Problem,
        description=description,
        media_type=PROBLEM_JSON,
        generate_examples=False,
    )


# The 401 of every route behind `requires_driver`.
DRIVER_UNAUTHORIZED = problem_doc("No valid driver token, or the login has ended (`unauthorized`)")


class DomainError(Exception):
    """Base for errors a client can act on; subclasses fix `status`, `code` and `title`."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str = "",
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}


class ValidationFailed(DomainError):
    status, code, title = 422, "validation_failed", "The request is not valid"


class Unauthorized(DomainError):
    status, code, title = 401, "unauthorized", "Authentication required"


class Forbidden(DomainError):
    status, code, title = 403, "forbidden", "Not allowed"


class NotFound(DomainError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(DomainError):
    status, code, title = 409, "conflict", "Conflict"


class RateLimited(DomainError):
    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, detail: str = "", *, retry_after_s: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, int(retry_after_s)))})


class ServiceUnavailable(DomainError):
    status, code, title = 503, "service_unavailable", "Service unavailable"


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str = "",
    *,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
) -> Response[bytes]:
    body = Problem(
        type=TYPE_BASE + code,
        title=title,
        status=status,
        code=code,
        detail=detail or title,
        instance=instance,
        errors=errors,
    )
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers or {},
    )


def _field_errors(extra: Any) -> list[FieldError]:
    """Litestar puts `[{message, key, source}]` in `extra`; turn it into `[{field, message}]`."""
    out: list[FieldError] = []
    items = extra if isinstance(extra, list) else [extra] if isinstance(extra, dict) else []
    for item in items:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid"))
        key = item.get("key")
        field = field_from_message(message)
        if field == "body" and key and key != "data":
            field = str(key)
        out.append(FieldError(field=field, message=message))
    return out


def field_from_message(message: str) -> str:
    # msgspec says e.g. "Expected `int`, got `str` - at `$.sites[0].lat`" or
    # "Object contains unknown field `role`" or "Object missing required field `email`".
    marker = " - at `"
    prefix = ""
    if marker in message:
        path = message.split(marker, 1)[1].rstrip("`")
        prefix = path.removeprefix("$.").removeprefix("$")
    for phrase in ("unknown field `", "required field `"):
        if phrase in message:
            name = message.split(phrase, 1)[1].split("`", 1)[0]
            return f"{prefix}.{name}" if prefix else name
    return prefix or "body"


def handle_domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[bytes]:
    return problem_response(
        exc.status,
        exc.code,
        exc.title,
        exc.detail,
        errors=exc.errors,
        headers=exc.headers,
        instance=request.url.path,
    )


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    path = request.url.path
    if isinstance(exc, ValidationException):
        errors = _field_errors(exc.extra) or [FieldError(field="body", message=exc.detail)]
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        return handle_domain_error(request, ValidationFailed(detail, errors=errors))
    if isinstance(exc, NotFoundException):
        return problem_response(404, "not_found", "Not found", exc.detail, instance=path)
    if isinstance(exc, NotAuthorizedException):
        return problem_response(
            401,
            "unauthorized",
            "Authentication required",
            exc.detail,
            headers={"WWW-Authenticate": "Bearer"},
            instance=path,
        )
    if isinstance(exc, PermissionDeniedException):
        return problem_response(403, "forbidden", "Not allowed", exc.detail, instance=path)
    if isinstance(exc, MethodNotAllowedException):
        return problem_response(
            405,
            "method_not_allowed",
            "Method not allowed",
            exc.detail,
            headers=dict(exc.headers or {}),
            instance=path,
        )
    status = exc.status_code
    if status == 400:  # malformed bodies and the like: invalid input is 422 (API.md)
        errors = [FieldError(field="body", message=exc.detail)]
        return handle_domain_error(request, ValidationFailed(exc.detail, errors=errors))
    if status >= 500:
        log.error("http error %s: %s", status, exc.detail)
        return problem_response(status, "internal_error", "Internal error", instance=path)
    code = {
        400: "bad_request",
        413: "payload_too_large",
        415: "unsupported_media_type",
        429: "rate_limited",
    }.get(status, f"http_{status}")
    return problem_response(
        status,
        code,
        exc.detail or "Error",
        exc.detail,
        headers=dict(exc.headers or {}),
        instance=path,
    )


def handle_unique_violation(
    request: Request[Any, Any, Any], exc: asyncpg.UniqueViolationError
) -> Response[bytes]:
    return problem_response(
        409, "conflict", "Conflict", "the resource already exists", instance=request.url.path
    )


def handle_exclusion_violation(
    request: Request[Any, Any, Any], exc: asyncpg.ExclusionViolationError
) -> Response[bytes]:
    return problem_response(
        409, "conflict", "Conflict", "the resource is taken", instance=request.url.path
    )


def handle_bad_value(
    request: Request[Any, Any, Any], exc: asyncpg.exceptions.DataError
) -> Response[bytes]:
    """Safety net for input that got past the boundary types but that PostgreSQL refuses
    as a value: SQLSTATE class 22 (data exception: a number beyond the column's range, a
    NUL character, an invalid date or text) and the value checks of class 23 (CHECK and
    NOT NULL). The request's transaction is rolled back; the client gets a 422, as for any
    invalid input, and the log a warning (the boundary type should have refused it)."""
    sqlstate = getattr(exc, "sqlstate", None) or "22000"
    log.warning(
        "value refused by the database on %s %s (%s): %s",
        request.method,
        request.url.path,
        sqlstate,
        type(exc).__name__,
    )
    message = "a value is out of range or not accepted"
    errors = [FieldError(field="request", message=message)]
    return handle_domain_error(request, ValidationFailed(message, errors=errors))


def handle_recursion(request: Request[Any, Any, Any], exc: RecursionError) -> Response[bytes]:
    """msgspec's own nesting guard ("… while deserializing an object") on a body a handler
    decoded itself is invalid input (422); any other RecursionError is our bug (500)."""
    if "deserializing" in str(exc):
        message = "the JSON nests too deeply"
        errors = [FieldError(field="body", message=message)]
        return handle_domain_error(request, ValidationFailed(message, errors=errors))
    return handle_internal(request, exc)


def handle_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.warning("dependency unavailable: %r", exc)
    return problem_response(
        503,
        "service_unavailable",
        "Service unavailable",
        "a backing service is unavailable; try again shortly",
        headers={"Retry-After": "2"},
        instance=request.url.path,
    )


def handle_internal(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "internal_error",
        "Internal error",
        "something went wrong on our side; it has been logged",
        instance=request.url.path,
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    DomainError: handle_domain_error,
    HTTPException: handle_http_exception,
    asyncpg.UniqueViolationError: handle_unique_violation,
    asyncpg.ExclusionViolationError: handle_exclusion_violation,
    asyncpg.exceptions.DataError: handle_bad_value,
    asyncpg.exceptions.CheckViolationError: handle_bad_value,
    asyncpg.exceptions.NotNullViolationError: handle_bad_value,
    RecursionError: handle_recursion,
    asyncpg.exceptions.PostgresConnectionError: handle_unavailable,
    asyncpg.exceptions.CannotConnectNowError: handle_unavailable,
    ConnectionError: handle_unavailable,
    OSError: handle_unavailable,
    Exception: handle_internal,
}
