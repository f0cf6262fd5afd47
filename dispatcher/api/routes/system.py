"""Health, readiness, metrics, the OpenAPI document and its docs page."""

from __future__ import annotations

import asyncio
import html
from datetime import UTC, datetime, timedelta

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dispatcher import __version__
from dispatcher.api.http import dump
from dispatcher.api.keys import ENGINE, METRICS, REDIS, REGISTRY, SESSIONS, SETTINGS
from dispatcher.api.registry import Registry, openapi_document
from dispatcher.api.schemas import Health, Ready
from dispatcher.storage.engine import ping
from dispatcher.storage.workers import live_workers


async def healthz(_: web.Request) -> web.Response:
    return dump(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    database, workers = await _check_database(request)
    redis = await _check_redis(request)
    ok = database == "ok" and redis == "ok"
    body = Ready(status="ready" if ok else "unavailable", database=database, redis=redis, workers=workers)
    return dump(body, status=200 if ok else 503)


async def _check_database(request: web.Request) -> tuple[str, int]:
    try:
        await asyncio.wait_for(ping(request.app[ENGINE]), 3)
        async with request.app[SESSIONS]() as session:
            found = await live_workers(session, now=datetime.now(UTC), within=timedelta(seconds=30))
    except Exception as exc:  # any failure means "not ready", reported by name only
        return f"error: {type(exc).__name__}", 0
    return "ok", len(found)


async def _check_redis(request: web.Request) -> str:
    try:
        await asyncio.wait_for(request.app[REDIS].ping(), 3)
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


async def metrics(request: web.Request) -> web.Response:
    payload = generate_latest(request.app[METRICS])
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    doc = openapi_document(
        request.app[REGISTRY], title="dispatcher API", version=__version__, server=settings.public_base_url
    )
    return web.json_response(doc)


async def docs(request: web.Request) -> web.Response:
    rows = "\n".join(
        f"<tr><td><code>{ep.method}</code></td><td><code>{html.escape(ep.path)}</code></td>"
        f"<td>{html.escape(ep.summary)}</td><td>{ep.scope or 'public'}</td></tr>"
        for ep in request.app[REGISTRY].endpoints
    )
    page = _DOCS.replace("{rows}", rows)
    return web.Response(text=page, content_type="text/html")


_DOCS = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>dispatcher API</title>
<style>body{font:15px system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left}</style>
</head><body><h1>dispatcher API</h1>
<p>Machine-readable document: <a href="/v1/openapi.json">/v1/openapi.json</a>. Authenticate with
<code>Authorization: Bearer &lt;API key&gt;</code>; create a key with <code>dispatcher apikey create</code>.
Errors are <code>{"error": {"code", "message", "details"}}</code>.</p>
<table><tr><th>Method</th><th>Path</th><th>What it does</th><th>Scope</th></tr>
{rows}
</table></body></html>"""


def register(api: Registry) -> None:
    api.route(
        "GET", "/healthz", summary="Liveness: the process answers", scope=None, response=Health, tags=("ops",)
    )(healthz)
    api.route(
        "GET",
        "/readyz",
        summary="Readiness: database and Redis reachable",
        scope=None,
        response=Ready,
        errors=(503,),
        tags=("ops",),
    )(readyz)
    api.route(
        "GET", "/metrics", summary="Prometheus metrics", scope=None, raw_response="text/plain", tags=("ops",)
    )(metrics)
    api.route(
        "GET",
        "/v1/openapi.json",
        summary="This OpenAPI document",
        scope=None,
        raw_response="application/json",
        tags=("docs",),
    )(openapi)
    api.route(
        "GET",
        "/v1/docs",
        summary="Human-readable API docs",
        scope=None,
        raw_response="text/html",
        tags=("docs",),
    )(docs)
