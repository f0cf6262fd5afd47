"""The one error tree of dispatcher.

Every failure the service reports is an instance of :class:`DispatcherError`. The core raises these with no
idea of HTTP; the API edge maps ``status`` and ``code`` to a JSON body ``{"error": {...}}``.

::

    DispatcherError                      500 internal
    ├── InputError                       422 invalid_input      bad values in a request, file or template
    │   ├── TemplateError                422 invalid_template   syntax, unsafe construct, render limits
    │   ├── CsvFormatError               422 invalid_csv        undecodable or malformed upload
    │   └── MalformedBodyError           400 malformed_body     body is not valid JSON / UTF-8
    ├── AuthenticationError              401 unauthenticated    missing or unknown API key
    ├── PermissionDeniedError            403 forbidden          key lacks the scope
    ├── NotFoundError                    404 not_found          absent, or in another workspace
    ├── ConflictError                    409 conflict           state does not allow the action
    ├── PayloadTooLargeError             413 payload_too_large
    ├── RateLimitedError                 429 rate_limited
    ├── UnavailableError                 503 unavailable        database or Redis unreachable
    └── ProviderError                    (never reaches a client: classified at the channel edge)
        ├── TransientProviderError       retry later (throttled, 5xx, timeout); ``retry_after`` seconds
        └── PermanentProviderError       record once, maybe suppress (invalid number, hard bounce)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar


class DispatcherError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, details: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InputError(DispatcherError):
    status = 422
    code = "invalid_input"


class TemplateError(InputError):
    code = "invalid_template"


class CsvFormatError(InputError):
    code = "invalid_csv"


class MalformedBodyError(InputError):
    status = 400
    code = "malformed_body"


class AuthenticationError(DispatcherError):
    status = 401
    code = "unauthenticated"


class PermissionDeniedError(DispatcherError):
    status = 403
    code = "forbidden"


class NotFoundError(DispatcherError):
    status = 404
    code = "not_found"


class ConflictError(DispatcherError):
    status = 409
    code = "conflict"


class PayloadTooLargeError(DispatcherError):
    status = 413
    code = "payload_too_large"


class RateLimitedError(DispatcherError):
    status = 429
    code = "rate_limited"


class UnavailableError(DispatcherError):
    status = 503
    code = "unavailable"


class ProviderError(DispatcherError):
    code = "provider_error"


class TransientProviderError(ProviderError):
    code = "provider_transient"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentProviderError(ProviderError):
    code = "provider_permanent"

    def __init__(self, message: str, *, reason: str = "rejected") -> None:
        super().__init__(message)
        self.reason = reason
