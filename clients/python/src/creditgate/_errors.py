"""Every error the client raises, typed by HTTP status like the TypeScript client's."""

from __future__ import annotations

from typing import Any, Mapping


class CreditgateError(Exception):
    """An HTTP error answer (with the server's error envelope), or a request that got no answer (no status)."""

    status: int | None
    type: str | None
    code: str | None
    param: str | None
    request_id: str | None
    headers: Mapping[str, str] | None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = _str(error, "type")
        self.code = _str(error, "code")
        self.param = _str(error, "param")
        self.headers = headers
        self.request_id = _str(error, "request_id") or (headers.get("x-request-id") if headers is not None else None)


class BadRequestError(CreditgateError):
    """400: the request was refused as invalid; nothing changed."""


class AuthenticationError(CreditgateError):
    """401: a missing, unknown, revoked or expired key."""


class InsufficientCreditsError(CreditgateError):
    """402: the team cannot afford the job or the call."""


class PermissionDeniedError(CreditgateError):
    """403: an admin route with a team key, a model the team may not use, a suspended team."""


class NotFoundError(CreditgateError):
    """404: no such object, or it belongs to another team."""


class ConflictError(CreditgateError):
    """409: a state conflict (a job settled with another status, an Idempotency-Key reused with another body)."""


class RateLimitError(CreditgateError):
    """429: the team is over one of its rate limits."""


class UpstreamError(CreditgateError):
    """502/504 before any byte, or an in-band error event in the middle of a stream."""


class InternalServerError(CreditgateError):
    """Any other 5xx."""


class APIConnectionError(CreditgateError):
    """No answer: refused, reset or cut-off connection, or a stream that ended before it was done."""


class APITimeoutError(APIConnectionError):
    """The request took longer than the client's timeout."""


_BY_STATUS: dict[int, type[CreditgateError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitError,
    502: UpstreamError,
    504: UpstreamError,
}


def error_from_response(status: int, body: object, headers: Mapping[str, str]) -> CreditgateError:
    """The typed error for an HTTP error answer; `body` is the parsed JSON or the text (a proxy may send HTML)."""
    error = error_detail(body)
    if error is not None:
        message = str(error.get("message"))
    elif isinstance(body, str) and body:
        message = body[:500]
    else:
        message = f"HTTP {status}"
    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else CreditgateError)
    return cls(f"{status} {message}", status=status, error=error, headers=headers)


def error_detail(body: object) -> Mapping[str, Any] | None:
    """The `error` object of the contract's envelope `{"error": {"type", "code", "message", "param"}}`, if it is one."""
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    if isinstance(error, Mapping) and isinstance(error.get("message"), str):
        return error
    return None


def _str(error: Mapping[str, Any] | None, key: str) -> str | None:
    value = error.get(key) if error is not None else None
    return value if isinstance(value, str) else None
