"""The Redis side of the pipeline: connecting, refusing unsafe servers, deterministic job ids.

Redis only rings the doorbell; the database holds the work. A server that may evict keys would silently drop
job bodies, so we refuse to run on one.
"""

from __future__ import annotations

import time
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from dispatcher.errors import UnavailableError
from dispatcher.logs import get_logger

log = get_logger(__name__)

SAFE_EVICTION_POLICIES = frozenset({"noeviction"})


def redis_settings(url: str) -> RedisSettings:
    settings: RedisSettings = RedisSettings.from_dsn(url)
    settings.conn_timeout = 2
    settings.conn_retries = 3
    return settings


async def connect_queue(url: str, *, check_policy: bool = True) -> ArqRedis:
    try:
        pool: ArqRedis = await create_pool(redis_settings(url))
    except Exception as exc:  # arq re-raises the last connection error of any kind
        raise UnavailableError(f"cannot reach Redis: {type(exc).__name__}") from exc
    if check_policy:
        await ensure_safe_policy(pool)
    return pool


async def ensure_safe_policy(pool: ArqRedis) -> None:
    config: dict[str, Any] = await pool.config_get("maxmemory-policy")
    policy = str(config.get("maxmemory-policy", "noeviction"))
    if policy not in SAFE_EVICTION_POLICIES:
        await pool.aclose()
        raise UnavailableError(
            f"Redis maxmemory-policy is {policy!r}: it may evict queued jobs; set it to 'noeviction'"
        )


def job_id(kind: str, *parts: int | str) -> str:
    """A repeat enqueue of the same work gets the same id, which arq refuses while the first exists."""
    if not kind or ":" in kind:
        raise ValueError(f"bad job kind {kind!r}")
    return ":".join([kind, *(str(p) for p in parts)])


async def wake_dispatcher(pool: ArqRedis, queue_name: str) -> None:
    """Run a dispatch tick now rather than at the next whole second: a campaign that has just become
    running (resumed, or its pilot released) starts sending at once. Best effort: if Redis is away,
    the cron tick gets there a second later."""
    try:
        await pool.enqueue_job(
            "dispatch_tick", _job_id=job_id("tick", time.time_ns()), _queue_name=queue_name
        )
    except Exception as exc:  # the cron tick is the fallback, whatever went wrong
        log.warning("dispatch.wake_failed", error=type(exc).__name__)
