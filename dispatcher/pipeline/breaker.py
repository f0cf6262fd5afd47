"""Provider circuit breakers shared by every worker, kept in Redis (policy in :mod:`dispatcher.core.routing`).

Counters live in fixed windows (``brk:{provider}:{window}`` hash of ``calls`` and ``fail``) that expire on
their own; an open circuit is one key with a TTL, so it closes by itself and the next calls are the probe.
A Redis restart forgets every open circuit: traffic returns to the primary, which trips again if still
unwell — a few more failed attempts, each retried, never a lost or doubled message.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from dispatcher.core.routing import BreakerPolicy, health_counts
from dispatcher.logs import get_logger

log = get_logger(__name__)


def _open_key(provider_id: int) -> str:
    return f"brk:{provider_id}:open"


class Breakers:
    def __init__(self, redis: Any, policy: BreakerPolicy | None = None) -> None:
        self._redis = redis
        self.policy = policy or BreakerPolicy()

    async def open_among(self, provider_ids: Iterable[int]) -> set[int]:
        ids = list(dict.fromkeys(provider_ids))
        if not ids:
            return set()
        values = await self._redis.mget([_open_key(pid) for pid in ids])
        return {pid for pid, value in zip(ids, values, strict=True) if value is not None}

    async def record(self, provider_id: int, outcomes: Sequence[tuple[str, str | None]]) -> bool:
        """Count a batch's outcomes; True when this batch tripped the circuit open."""
        calls, failures = health_counts(outcomes)
        if not calls:
            return False
        window = int(time.time()) // self.policy.window_s
        key = f"brk:{provider_id}:{window}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.hincrby(key, "calls", calls)
        pipe.hincrby(key, "fail", failures)
        pipe.expire(key, self.policy.window_s * 2)
        total_calls, total_failures, _ = await pipe.execute()
        if failures == 0 or not self.policy.trips(int(total_calls), int(total_failures)):
            return False
        # the window starts afresh after opening, so the probe after the cool-down is judged on its own
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(_open_key(provider_id), "1", ex=self.policy.open_s)
        pipe.delete(key)
        await pipe.execute()
        log.warning(
            "provider.circuit_open",
            provider_id=provider_id,
            calls=int(total_calls),
            failures=int(total_failures),
            open_s=self.policy.open_s,
        )
        return True

    async def reopen_in(self, provider_ids: Iterable[int]) -> float:
        """Seconds until the first of these open circuits closes (0 when none is open)."""
        ids = list(provider_ids)
        if not ids:
            return 0.0
        pipe = self._redis.pipeline(transaction=False)
        for pid in ids:
            pipe.pttl(_open_key(pid))
        ttls = [int(t) for t in await pipe.execute() if int(t) > 0]
        return min(ttls) / 1000 if ttls else 0.0
