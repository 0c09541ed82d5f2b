"""What the sync and async clients share: the request they send, and when and how long to wait before a retry."""

from __future__ import annotations

import email.utils
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import quote

import httpx

from ._errors import APIConnectionError, APITimeoutError, CreditgateError, error_from_response

DEFAULT_TIMEOUT = 600.0
DEFAULT_MAX_RETRIES = 2
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
# A Retry-After beyond this is not waited for in-process; the default backoff applies instead.
MAX_RETRY_AFTER = 60.0

Query = Mapping[str, str | int | None]


@dataclass
class ApiRequest:
    method: str
    path: str
    body: Any = None
    query: Query = field(default_factory=dict)
    idempotency_key: str | None = None
    stream: bool = False
    # The media type of a 2xx answer that is not JSON (a CSV export).
    accept: str | None = None

    def to_httpx(self, client: httpx.Client | httpx.AsyncClient, api_key: str) -> httpx.Request:
        headers = {"accept": self.accept or ("text/event-stream" if self.stream else "application/json")}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        if self.method == "POST":
            # One key per logical call, reused by every retry of it: the server replays the first answer
            # instead of creating or charging twice.
            if self.idempotency_key is None:
                self.idempotency_key = f"cg-{uuid.uuid4()}"
            headers["idempotency-key"] = self.idempotency_key
        params = {name: str(value) for name, value in self.query.items() if value is not None}
        content = None
        if self.body is not None:
            headers["content-type"] = "application/json"
            content = json.dumps(self.body).encode()
        return client.build_request(self.method, self.path, params=params, headers=headers, content=content)


def segment(value: str) -> str:
    """One path segment, encoded so an id can never change the route."""
    return quote(value, safe="")


def body_of(**fields: Any) -> dict[str, Any]:
    """A JSON body without the fields left out (None)."""
    return {name: value for name, value in fields.items() if value is not None}


def parse_json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError as cause:
        raise CreditgateError("the server answered with invalid JSON") from cause


def error_of(response: httpx.Response) -> CreditgateError:
    """The typed error of an answer whose body has been read."""
    try:
        body: object = response.json()
    except ValueError:
        body = response.text
    return error_from_response(response.status_code, body, response.headers)


def transport_error(cause: httpx.TransportError) -> CreditgateError:
    if isinstance(cause, httpx.TimeoutException):
        return APITimeoutError(f"request timed out: {cause}")
    return APIConnectionError(f"connection error: {cause}")


def is_retryable(error: CreditgateError) -> bool:
    """No answer at all (the Idempotency-Key makes a retry safe), 408, 429, 409 idempotency_key_in_progress (the
    first attempt still runs; a later retry gets its replay) and 5xx except 502/504, which are creditgate's verdict
    on the model provider after it already fell back through the model group."""
    if isinstance(error, APIConnectionError):
        return True
    status = error.status or 0
    if status == 409:
        return error.code == "idempotency_key_in_progress"
    if status in (502, 504):
        return False
    return status in (408, 429) or status >= 500


def retry_delay(attempt: int, headers: Mapping[str, str] | None) -> float:
    """Retry-After (ms, seconds or a date) when the server sent a sane one, else exponential backoff with jitter."""
    asked = _retry_after(headers) if headers is not None else None
    if asked is not None and 0 <= asked <= MAX_RETRY_AFTER:
        return asked
    backoff: float = min(INITIAL_RETRY_DELAY * 2**attempt, MAX_RETRY_DELAY)
    # Up to 25% jitter, so clients that failed together do not retry together.
    return backoff * (1 - random.random() * 0.25)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        return float(headers.get("retry-after-ms", "")) / 1000
    except ValueError:
        pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None
