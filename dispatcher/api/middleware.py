"""Middlewares: errors as JSON, metrics, API-key authentication, per-key rate limits."""

from __future__ import annotations

import time

import redis.exceptions
import sqlalchemy.exc
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Histogram

from dispatcher.api.keys import ENDPOINTS, PRINCIPAL_KEY, REDIS, SESSIONS, SETTINGS
from dispatcher.errors import DispatcherError, PayloadTooLargeError, RateLimitedError, UnavailableError
from dispatcher.logs import get_logger
from dispatcher.ops.auth import authenticate

log = get_logger(__name__)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 400: "bad_request"}
_UNAVAILABLE = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
)


def error_body(status: int, code: str, message: str, details: list[object] | None = None) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return web.json_response(body, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DispatcherError as exc:
        response = web.json_response(exc.to_body(), status=exc.status)
        if isinstance(exc, RateLimitedError):
            response.headers["Retry-After"] = "1"
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_body(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason)
    except _UNAVAILABLE as exc:
        log.warning("request.unavailable", error=type(exc).__name__, path=request.path)
        return error_body(503, UnavailableError.code, "database or Redis unavailable; retry shortly")
    except Exception:
        log.exception("request.failed", method=request.method, path=request.path)
        return error_body(500, "internal", "internal error; it has been logged")


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
