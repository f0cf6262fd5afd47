"""How fast the shared limits go: cap reservations (pipelined batches of 1,000) and limiter acquisitions.

    .venv/bin/python -m bench.limits [REDIS_URL]     (default redis://127.0.0.1:6379/14)

Only this run's keys are touched and they are deleted at the end.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from dispatcher.core.capping import CapPolicy
from dispatcher.pipeline.budget import Budget
from dispatcher.pipeline.limits import CapRequest, ContactChannel, FrequencyCaps, Sent
from dispatcher.pipeline.throughput import RateLimiter

BATCH = 1_000
BATCHES = 60
ZONES = ["America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Sydney"]
RUN = secrets.token_hex(4)


def batches(first: int, count: int, at: datetime) -> list[list[CapRequest]]:
    policy = CapPolicy()
    return [
        [
            CapRequest(f"b{RUN}x{n}", "sms", f"k{RUN}:{n}", at, ZONES[n % len(ZONES)], policy)
            for n in range((first + b) * BATCH, (first + b + 1) * BATCH)
        ]
        for b in range(count)
    ]


async def rate_of(label: str, count: int, work: Callable[[], Awaitable[object]]) -> None:
    started = time.perf_counter()
    await work()
    elapsed = time.perf_counter() - started
    print(f"{label:<58} {count / elapsed:>10,.0f} /s   ({count:,} in {elapsed:.2f} s)")


async def no_history(pairs: Sequence[ContactChannel]) -> Mapping[ContactChannel, Sequence[Sent]]:
    return {}


async def bench_caps(clients: list[Redis]) -> None:
    at = datetime.now(UTC)
    caps = FrequencyCaps(clients[0])
    work = batches(0, BATCHES, at)
    started = time.perf_counter()
    for batch in work:
        shapes: dict = {}  # type: ignore[type-arg]  # one per batch, as reserve() has
        [caps._reserve_command(item, shapes, False) for item in batch]  # the Python share of the cost
    keys_rate = BATCHES * BATCH / (time.perf_counter() - started)
    print(f"{'caps: building batch commands only (Python)':<58} {keys_rate:>10,.0f} /s")

    async def sequential(caps: FrequencyCaps, work: list[list[CapRequest]]) -> None:
        for batch in work:
            await caps.reserve(batch)

    await rate_of("caps: new contacts, 1 connection", BATCHES * BATCH, lambda: sequential(caps, work))
    await rate_of("caps: retried batches (idempotent path)", BATCHES * BATCH, lambda: sequential(caps, work))
    later = batches(0, BATCHES, at + timedelta(hours=1))
    fresh = [
        [CapRequest(i.contact_id, i.channel, i.send_id + "b", i.at, i.zone, i.policy) for i in b]
        for b in later
    ]
    await rate_of("caps: capped (second send the same day)", BATCHES * BATCH, lambda: sequential(caps, fresh))

    seeded = FrequencyCaps(clients[0], history=no_history)
    other = batches(BATCHES, BATCHES, at)
    await rate_of(
        "caps: restart-safe mode, first touch (seed + re-run)",
        BATCHES * BATCH,
        lambda: sequential(seeded, other),
    )
    again = [
        [CapRequest(i.contact_id, i.channel, i.send_id + "c", i.at, i.zone, i.policy) for i in b]
        for b in other
    ]
    await rate_of(
        "caps: restart-safe mode, seeded contacts", BATCHES * BATCH, lambda: sequential(seeded, again)
    )

    parallel = [batches(2 * BATCHES + w * BATCHES, BATCHES, at) for w in range(len(clients))]
    workers = [FrequencyCaps(client) for client in clients]

    async def together() -> None:
        await asyncio.gather(*(sequential(w, p) for w, p in zip(workers, parallel, strict=True)))

    await rate_of(
        f"caps: new contacts, {len(clients)} connections at once", len(clients) * BATCHES * BATCH, together
    )


async def bench_limiter(clients: list[Redis]) -> None:
    limiter = RateLimiter(clients[0])
    count = 5_000

    async def sequential() -> None:
        for _ in range(count):
            await limiter.acquire(f"bench{RUN}", 1, 1e9, 1_000_000)

    await rate_of("limiter: acquire, one await at a time", count, sequential)
    limiters = [RateLimiter(client) for client in clients]

    async def concurrent() -> None:
        async def task(index: int) -> None:
            for _ in range(count // 50):
                await limiters[index % len(limiters)].acquire(f"bench{RUN}", 1, 1e9, 1_000_000)

        await asyncio.gather(*(task(i) for i in range(50)))

    await rate_of(f"limiter: acquire, 50 tasks over {len(clients)} connections", count // 50 * 50, concurrent)
    budget = Budget(clients[0])
    await budget.seed(f"b{RUN}", 0)

    async def spend() -> None:
        for _ in range(count):
            await budget.spend(f"b{RUN}", 1, 10**15)

    await rate_of("budget: spend, one await at a time", count, spend)


async def cleanup(redis: Redis) -> None:
    for pattern in (f"cap:{{sms:b{RUN}x*", f"rate:{{bench{RUN}}}*", f"budget:{{b{RUN}}}"):
        keys = [key async for key in redis.scan_iter(match=pattern, count=10_000)]
        for start in range(0, len(keys), 10_000):
            await redis.delete(*keys[start : start + 10_000])


async def main(url: str) -> None:
    clients = [Redis.from_url(url) for _ in range(4)]
    try:
        await bench_caps(clients)
        await bench_limiter(clients)
    finally:
        await cleanup(clients[0])
        for client in clients:
            await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/14"))
