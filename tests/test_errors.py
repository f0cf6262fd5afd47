from __future__ import annotations

import pytest

from dispatcher import errors


@pytest.mark.parametrize(
    ("cls", "status", "code"),
    [
        (errors.InputError, 422, "invalid_input"),
        (errors.TemplateError, 422, "invalid_template"),
        (errors.CsvFormatError, 422, "invalid_csv"),
        (errors.MalformedBodyError, 400, "malformed_body"),
        (errors.AuthenticationError, 401, "unauthenticated"),
        (errors.PermissionDeniedError, 403, "forbidden"),
        (errors.NotFoundError, 404, "not_found"),
        (errors.ConflictError, 409, "conflict"),
        (errors.PayloadTooLargeError, 413, "payload_too_large"),
        (errors.RateLimitedError, 429, "rate_limited"),
        (errors.UnavailableError, 503, "unavailable"),
    ],
)
def test_each_error_maps_to_status_and_body(
    cls: type[errors.DispatcherError], status: int, code: str
) -> None:
    exc = cls("went wrong", details=[{"field": "x"}])
    assert exc.status == status
    assert exc.to_body() == {"error": {"code": code, "message": "went wrong", "details": [{"field": "x"}]}}
    assert isinstance(exc, errors.DispatcherError)


def test_provider_errors_carry_their_classification() -> None:
    transient = errors.TransientProviderError("throttled", retry_after=2.5)
    permanent = errors.PermanentProviderError("no such number", reason="invalid_number")
    assert transient.retry_after == 2.5
    assert permanent.reason == "invalid_number"
    assert isinstance(transient, errors.ProviderError)
    assert not isinstance(permanent, errors.TransientProviderError)
