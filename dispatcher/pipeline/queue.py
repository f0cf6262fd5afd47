"""The Redis side of the pipeline: connecting, refusing unsafe servers, deterministic job ids.

Redis only rings the doorbell; the database holds the work. A server that may evict keys would silently drop
job bodies, so we refuse to run on one.
"""

from __future__ import annotations

from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from dispatcher.errors import UnavailableError

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
