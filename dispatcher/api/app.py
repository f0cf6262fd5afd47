"""``create_app(settings)``: the one place the HTTP service is assembled."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from dispatcher.api import middleware, routes
from dispatcher.api.keys import ENDPOINTS, ENGINE, HTTP, METRICS, REDIS, REGISTRY, SESSIONS, SETTINGS
from dispatcher.api.registry import Registry
from dispatcher.api.routes.templates import builtin_templates_ctx
from dispatcher.errors import InputError
from dispatcher.pipeline.queue import connect_queue
from dispatcher.settings import Settings
from dispatcher.storage.engine import create_engine, session_factory


def build_registry() -> Registry:
    """Every module in ``dispatcher.api.routes`` contributes its endpoints through ``register(api)``."""
    registry = Registry()
    for info in sorted(pkgutil.iter_modules(routes.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{routes.__name__}.{info.name}")
        module.register(registry)
    return registry


def create_app(settings: Settings) -> web.Application:
    if settings.redis_url is None:
        raise InputError("create_app needs settings.redis_url (the CLI resolves the embedded server)")
    metrics = CollectorRegistry()
    app = web.Application(
        client_max_size=settings.max_json_bytes,
        middlewares=[
            middleware.metrics_middleware(metrics),
            middleware.errors,
            middleware.body_limit,
            middleware.auth,
        ],
    )
    registry = build_registry()
    registry.install(app)
    app[SETTINGS] = settings
    app[REGISTRY] = registry
    app[ENDPOINTS] = {ep.name: ep for ep in registry.endpoints}
    app[METRICS] = metrics
    app.cleanup_ctx.extend([_database, builtin_templates_ctx, _redis, _http])
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[SETTINGS].database_url)
    app[ENGINE] = engine
    app[SESSIONS] = session_factory(engine)
    yield
    await engine.dispose()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    url = app[SETTINGS].redis_url
    assert url is not None
    pool = await connect_queue(url)
    app[REDIS] = pool
    yield
    await pool.aclose()


async def _http(app: web.Application) -> AsyncIterator[None]:
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    app[HTTP] = session
    yield
    await session.close()
