"""The typed job context: arq hands jobs a dict, we hand them ``WorkerResources``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dispatcher.pipeline.cleaner import ParallelCleaner
from dispatcher.settings import Settings

_KEY = "dispatcher.resources"
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class WorkerResources:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    http: aiohttp.ClientSession
    worker_id: str
    host: str
    pid: int
    jobs_done: int = 0
    cleaner: ParallelCleaner | None = None  # started on the first import, shut down with the worker
    extra: dict[str, Any] = field(default_factory=dict)
    # "now" for every scheduling decision of the jobs (plan, tick, sweep, send gates): tests and simulations
    # pass a controlled clock to move a campaign across windows and DST switches without waiting for them
    clock: Clock = utc_now


def attach(ctx: dict[str, Any], resources: WorkerResources) -> None:
    ctx[_KEY] = resources


def resources(ctx: dict[str, Any]) -> WorkerResources:
    value = ctx[_KEY]
    assert isinstance(value, WorkerResources)
    return value


def queue(ctx: dict[str, Any]) -> ArqRedis:
    redis = ctx["redis"]
    assert isinstance(redis, ArqRedis)
    return redis
