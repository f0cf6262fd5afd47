"""Middlewares: errors as JSON, metrics, API-key authentication, per-key rate limits."""

from __future__ import annotations

import time

import redis.exceptions
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Histogram

from dispatcher.api.idempotency import check_key
from dispatcher.api.keys import ENDPOINTS, PRINCIPAL_KEY, REDIS, SESSIONS, SETTINGS
from dispatcher.errors import DispatcherError, PayloadTooLargeError, RateLimitedError, UnavailableError
from dispatcher.logs import get_logger
from dispatcher.ops.auth import authenticate
from dispatcher.storage.engine import connection_lost

log = get_logger(__name__)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 400: "bad_request"}
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_RETRY_AFTER_S = {429: "1", 503: "5"}


def error_body(status: int, code: str, message: str, details: list[object] | None = None) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return web.json_response(body, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DispatcherError as exc:
        return _with_retry_after(web.json_response(exc.to_body(), status=exc.status))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(exc)
    except HttpProcessingError:  # a multipart part with broken headers, read while the handler streams it
        return error_body(400, "malformed_body", "malformed body: broken part headers or framing")
    except Exception as exc:
        if isinstance(exc, _REDIS_DOWN) or connection_lost(exc):
            # an outage, not a bug: clients retry, and the pool replaces dead connections meanwhile
            log.warning("request.unavailable", error=type(exc).__name__, path=request.path)
            unavailable = UnavailableError("database or Redis unavailable; retry shortly")
            return _with_retry_after(web.json_response(unavailable.to_body(), status=503))
        log.exception("request.failed", method=request.method, path=request.path)
        return error_body(500, "internal", "internal error; it has been logged")


def _with_retry_after(response: web.Response) -> web.Response:
    if response.status in _RETRY_AFTER_S:
        response.headers["Retry-After"] = _RETRY_AFTER_S[response.status]
    return response


def _http_error(exc: web.HTTPException) -> web.Response:
    response = error_body(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason)
    if isinstance(exc, web.HTTPMethodNotAllowed):  # RFC 9110: a 405 lists what the resource supports
        response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
    return response


def metrics_middleware(registry: CollectorRegistry) -> web.middleware:  # type: ignore[valid-type]
    requests = Counter(
        "dispatcher_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry
    )
    latency = Histogram(
        "dispatcher_http_request_seconds", "HTTP latency", ["method", "route"], registry=registry
    )

    @web.middleware
    async def metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        route = _route_name(request)
        response = await handler(request)
        requests.labels(request.method, route, str(response.status)).inc()
        latency.labels(request.method, route).observe(time.perf_counter() - start)
        return response

    return metrics


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    endpoint = request.app[ENDPOINTS].get(request.match_info.route.name or "")
    if endpoint is None or endpoint.scope is None:
        return await handler(request)
    async with request.app[SESSIONS]() as session:
        found = await authenticate(session, request.headers.get("Authorization"))
    found.require(endpoint.scope)
    request[PRINCIPAL_KEY] = found
    await _rate_limit(request, found.key_id)
    if request.method == "POST":
        check_key(request)
    return await handler(request)


async def _rate_limit(request: web.Request, key_id: int) -> None:
    limit = request.app[SETTINGS].api_rate_limit_per_s
    if limit <= 0:
        return
    bucket = f"dispatcher:rl:{key_id}:{int(time.time())}"
    pipe = request.app[REDIS].pipeline(transaction=False)
    pipe.incr(bucket)
    pipe.expire(bucket, 2)
    count, _ = await pipe.execute()
    if int(count) > limit:
        raise RateLimitedError(f"more than {limit} requests per second for this API key")


@web.middleware
async def body_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    declared = request.content_length
    if declared is not None and declared > max(settings.max_json_bytes, settings.max_upload_bytes):
        raise PayloadTooLargeError(f"body of {declared} bytes is over the limit")
    return await handler(request)
