"""The SMS stand-in's ceiling: how many requests/s it takes from a bare aiohttp client.

This is the figure issue 5's dispatch benchmark compares against: the stub (``dispatcher.channels.fake_sms``)
in its own process, driven by one shared ``aiohttp.ClientSession`` at concurrency 50 with N requests, each a
form POST to Messages.json with its own idempotency token. Then the same N through ``TwilioHttpChannel``
(batches of 1,000) to show what the channel layer costs on top. Afterwards the stub's own counters are
checked: every message recorded exactly once. CPU time per request (client and stub) is printed too: it
says more than wall-clock rates on a machine shared with other work.

    .venv/bin/python bench/sms_ceiling.py [-n 20000] [-c 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from urllib.parse import urlencode

import aiohttp

from dispatcher.channels.base import OutboundSms
from dispatcher.channels.fake_sms import FakeSmsConfig, start_fake_sms
from dispatcher.channels.twilio_http import (
    IDEMPOTENCY_HEADER,
    TwilioHttpChannel,
    basic_auth_header,
    messages_path,
)

CONFIG = FakeSmsConfig(seed=1)
SENDER = "+15550000000"
BODY = "Spring sale: 20% off everything until Sunday. Reply STOP to opt out."


def _serve(conn: Connection) -> None:
    """Stub process: answers each "cpu?" on the pipe with its own CPU seconds so far."""

    async def main() -> None:
        runner, url = await start_fake_sms(CONFIG)
        conn.send(url)
        loop = asyncio.get_running_loop()
        try:
            while await loop.run_in_executor(None, conn.recv):
                conn.send(time.process_time())
        finally:
            await runner.cleanup()

    asyncio.run(main())


def _to(i: int) -> str:
    return f"+1555{i % 10_000_000:07d}"


async def bare_client(url: str, n: int, concurrency: int, run: int) -> None:
    target = url + messages_path(CONFIG.account_sid)
    headers = {
        "Authorization": basic_auth_header(CONFIG.account_sid, CONFIG.auth_token),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    counter = iter(range(n))
    async with aiohttp.ClientSession(headers=headers) as session:

        async def worker() -> None:
            for i in counter:
                body = urlencode({"To": _to(i), "From": SENDER, "Body": BODY}).encode()
                token = {IDEMPOTENCY_HEADER: f"bare-{run}-{i}"}
                async with session.post(target, data=body, headers=token) as response:
                    await response.read()
                    assert response.status == 201, response.status

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def channel_client(url: str, n: int, concurrency: int, run: int) -> None:
    async with aiohttp.ClientSession() as session:
        channel = TwilioHttpChannel(
            base_url=url,
            account_sid=CONFIG.account_sid,
            auth_token=CONFIG.auth_token,
            session=session,
            concurrency=concurrency,
            supports_idempotency=True,
        )
        messages = [OutboundSms(i, _to(i), SENDER, BODY, f"chan-{run}-{i}") for i in range(n)]
        for start in range(0, n, 1000):
            outcomes = await channel.send_batch(messages[start : start + 1000])
            assert all(o.status == "sent" for o in outcomes)


Client = Callable[[str, int, int, int], Awaitable[None]]


async def timed(client: Client, url: str, n: int, concurrency: int, run: int, stub: Connection) -> str:
    stub.send(True)
    stub_cpu = stub.recv()
    wall, cpu = time.perf_counter(), time.process_time()
    await client(url, n, concurrency, run)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stub.send(True)
    stub_cpu = stub.recv() - stub_cpu
    return f"{n / wall:,.0f}/s  (client {cpu / n * 1e6:.0f} µs/req, stub {stub_cpu / n * 1e6:.0f} µs/req)"


def _rate(line: str) -> float:
    return float(line.split("/s", 1)[0].replace(",", ""))


async def measure(url: str, n: int, concurrency: int, repeat: int, stub: Connection) -> None:
    await bare_client(url, min(n, 2000), concurrency, -1)  # warm-up: connections, caches
    bare, chan = [], []
    for run in range(repeat):
        bare.append(await timed(bare_client, url, n, concurrency, run, stub))
        chan.append(await timed(channel_client, url, n, concurrency, run, stub))
    async with aiohttp.ClientSession() as session, session.get(url + "/_stub/stats") as response:
        stats = await response.json()
    ceiling = statistics.median(_rate(line) for line in bare)
    through = statistics.median(_rate(line) for line in chan)
    print(f"stub ceiling: bare aiohttp client, 1 session, concurrency {concurrency}, N={n:,}")
    print("\n".join(f"  run {i + 1}: {line}" for i, line in enumerate(bare)))
    print(f"  median: {ceiling:,.0f} requests/s")
    print("through TwilioHttpChannel.send_batch (batches of 1,000), same stub")
    print("\n".join(f"  run {i + 1}: {line}" for i, line in enumerate(chan)))
    print(f"  median: {through:,.0f} messages/s  (ratio to ceiling {through / ceiling:.2f})")
    expected = min(n, 2000) + 2 * n * repeat
    exact = stats["messages"] == stats["unique_tokens"] == expected and stats.get("deduplicated", 0) == 0
    verdict = "exactly once" if exact else f"MISMATCH (expected {expected:,})"
    print(f"stub recorded {stats['messages']:,} messages, {stats['unique_tokens']:,} tokens: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("-c", "--concurrency", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    parent, child = multiprocessing.Pipe()
    stub = multiprocessing.get_context("spawn").Process(target=_serve, args=(child,), daemon=True)
    stub.start()
    try:
        url = parent.recv()
        asyncio.run(measure(url, args.n, args.concurrency, args.repeat, parent))
    finally:
        parent.send(False)
        stub.join(timeout=5)
        if stub.is_alive():
            stub.terminate()


if __name__ == "__main__":
    main()
