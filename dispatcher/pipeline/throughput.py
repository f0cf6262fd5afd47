"""Send rates shared by every worker on every machine, kept in Redis.

Rates are GCRA buckets on the Redis server clock, so workers on machines with skewed clocks share one
limit. A provider's throttling answer (429 ``Retry-After``) is recorded with :meth:`RateLimiter.block` and
stops every worker's acquisitions on that key until it passes.
"""

from __future__ import annotations

import math

from redis.asyncio import Redis

from dispatcher.errors import InputError
from dispatcher.pipeline import limits_lua as lua

_ACQUIRE = lua.Script(lua.RATE_ACQUIRE)
_BLOCK = lua.Script(lua.RATE_BLOCK)


class RateLimiter:
    """Messages per second per key (``provider:<name>``, ``sender:<number>``), shared by all workers.

    To honour both a sender's and its provider's limit, acquire from the sender first and then ask the
    provider for what the sender granted; tokens the provider refuses are simply lost (a short stall).
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def acquire(
        self, key: str, n: int, rate: float, burst: int, now_ms: int | None = None
    ) -> tuple[int, float]:
        """Take up to ``n`` tokens now: ``(granted, wait_s)``.

        ``wait_s`` is 0 when all were granted, else the time until the rest (at most ``burst``) should be
        there, or until a recorded back-off ends. ``now_ms`` replaces the server clock (tests, simulations).
        """
        if n < 0 or burst < 1 or not rate > 0 or math.isinf(rate):
            raise InputError("acquire needs n >= 0, burst >= 1 and a finite rate > 0")
        tag = lua.tagged_key("rate", key)
        now_us = "" if now_ms is None else now_ms * 1000
        granted, wait_us = await _ACQUIRE.run(
            self._redis, [tag, f"{tag}:block"], [n, repr(rate), burst, now_us]
        )
        return int(granted), int(wait_us) / 1_000_000

    async def block(self, key: str, seconds: float) -> float:
        """Pause ``key`` for every worker for ``seconds`` (a ``Retry-After``); returns the pause in force."""
        if not seconds > 0 or math.isinf(seconds):
            raise InputError("a back-off must be a finite number of seconds above zero")
        tag = lua.tagged_key("rate", key)
        remaining_ms = await _BLOCK.run(self._redis, [f"{tag}:block"], [math.ceil(seconds * 1000)])
        return max(0, int(remaining_ms)) / 1000

    async def blocked_for(self, key: str) -> float:
        """Seconds until the back-off recorded for ``key`` ends; 0 when there is none."""
        remaining_ms = await self._redis.pttl(f"{lua.tagged_key('rate', key)}:block")
        return max(0, int(remaining_ms)) / 1000
