"""Typed application keys: every resource the handlers use, created in cleanup contexts."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from arq.connections import ArqRedis
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dispatcher.api.registry import Endpoint, Registry
from dispatcher.ops.auth import Principal
from dispatcher.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
REDIS = web.AppKey("redis", ArqRedis)
HTTP = web.AppKey("http", aiohttp.ClientSession)
REGISTRY = web.AppKey("registry", Registry)
ENDPOINTS = web.AppKey("endpoints", dict[str, Endpoint])
METRICS = web.AppKey("metrics", CollectorRegistry)

PRINCIPAL_KEY = web.RequestKey("principal", Principal)


def principal(request: web.Request) -> Principal:
    value = request[PRINCIPAL_KEY]
    assert isinstance(value, Principal)
    return value
