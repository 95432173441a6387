"""How every failure becomes ``{"error": code, "detail": text}``.

Handlers raise :class:`ApiError` for what they detect themselves; the
middleware maps aiohttp's HTTP exceptions and borne's own errors with
:func:`error_for`. Anything else is a bug: a 500 with a generic body, logged.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from station.errors import DocumentRejected, DomainError, IntegrationError, StorageError


class ApiError(Exception):
    """An answer other than 2xx, decided by the API layer itself."""

    def __init__(self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def error_for(err: Exception) -> ApiError | None:
    """The answer for a known error, None for a bug."""
    if isinstance(err, ApiError):
        return err
    if isinstance(err, DocumentRejected):
        return ApiError(409 if err.conflict else 422, err.code, err.detail)
    if isinstance(err, DomainError):
        return ApiError(422, getattr(err, "code", None) or "rejected", str(err) or type(err).__name__)
    if isinstance(err, StorageError | IntegrationError):
        return ApiError(503, "unavailable", str(err) or type(err).__name__)
    if isinstance(err, web.HTTPRequestEntityTooLarge):
        return ApiError(413, "body_too_large", "the request body exceeds the station's limit")
    if isinstance(err, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(err.allowed_methods))
        return ApiError(405, "method_not_allowed", f"{err.method} is not allowed here (allowed: {allowed})", headers={"Allow": allowed})
    if isinstance(err, web.HTTPException) and err.status >= 400:
        code = _HTTP_CODES.get(err.status, err.reason.lower().replace(" ", "_"))
        detail = "no such route" if err.status == 404 else (err.text or err.reason)
        return ApiError(err.status, code, detail)
    return None


def describe_validation(err: ValidationError, where: str) -> str:
    """First schema error as one line naming the field, e.g. ``body.up_to: ...``."""
    first = err.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in (where, *first["loc"]))
    msg = first["msg"].removeprefix("Value error, ")
    more = err.error_count() - 1
    return f"{loc}: {msg}" + (f" (+{more} more)" if more else "")


def invalid(err: ValidationError, where: str, *, code: str = "invalid_request") -> ApiError:
    """400 when the body is not JSON at all, else 422 naming the field."""
    first = err.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        ctx = first.get("ctx") or {}
        return ApiError(400, "bad_json", f"{where} is not valid JSON: {ctx.get('error', first['msg'])}")
    return ApiError(422, code, describe_validation(err, where))
