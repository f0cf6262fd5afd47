"""What ``bench/dispatch.py`` sends to: each stand-in in its own process, its ceiling, and its counters.

- ``sms``: the Twilio-style HTTP stub; ceiling = a bare aiohttp client, one session, concurrency 50.
- ``email``: the SMTP sink (``fake_smtp``, envelopes only); ceiling = bare aiosmtplib, 10 reused connections.
- ``smpp``: the smpp34 SMSC simulator; ceiling = a bare aiosmpplib ESME with 64 submit_sm in flight.

Counters are read before and after a campaign: it sent exactly once when the stand-in received N more
messages, N more distinct ones, and no more duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import multiprocessing
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.sms_ceiling import bare_client
from dispatcher.channels.fake_sms import serve_fake_sms
from dispatcher.channels.fake_sms_store import FakeSmsConfig

# The stub answers at once but posts each message's status callbacks (queued, sent, delivered) an hour
# later: those posts are the provider's work, not ours, and the ceiling's requests carry none. Run inside
# the measured window they took the stub's process about three times the CPU of answering the request.
CALLBACKS_LATER_S = 3600.0

Counts = tuple[int, int, int]
"""(messages, distinct messages, duplicates) received by a stand-in so far."""


@dataclass
class Target:
    channel: str  # sms | email | smpp: the benchmark's name for it
    kind: str  # the provider kind the campaign goes through
    config: dict[str, Any]
    sender: str | None
    ceiling_label: str
    ceiling: Callable[[int, int], Awaitable[float]]  # (messages, run) → messages/s
    counts: Callable[[], Awaitable[Counts]]
    pids: list[int] = field(default_factory=list)  # the stand-in's own process, for CPU accounting


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def get_json(url: str, method: str = "GET") -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, url) as response:
        body: dict[str, Any] = await response.json()
        return body


def serve_stub(port: int) -> None:
    config = FakeSmsConfig(seed=1, delivery_rate=0.97, callback_latency=CALLBACKS_LATER_S)
    serve_fake_sms("127.0.0.1", port, config)


@contextlib.asynccontextmanager
async def sms_target(callbacks: bool = False) -> AsyncIterator[Target]:
    """``callbacks``: ``dispatcher fake-sms`` itself, posting status callbacks as messages arrive."""
    port = free_port()
    command = ["-m", "dispatcher", "fake-sms", "--seed", "1", "--port", str(port)]
    if not callbacks:
        command = ["-m", "bench.dispatch", f"--serve-stub={port}"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    stub = FakeSmsConfig()

    async def ceiling(n: int, run: int) -> float:
        await bare_client(url, min(n, 2000), 50, 1000 + run)  # warm-up: connections, caches
        started = asyncio.get_running_loop().time()
        await bare_client(url, n, 50, run)
        return n / (asyncio.get_running_loop().time() - started)

    async def counts() -> Counts:
        stats = await get_json(url + "/_stub/stats")
        return stats["messages"], stats["unique_recipients"], stats["recipients_with_duplicates"]

    try:
        for _ in range(600):  # a loaded machine takes seconds to import
            try:
                await get_json(url + "/_stub/stats")
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        config: dict[str, Any] = {"base_url": url, "account_sid": stub.account_sid}
        config |= {
            "auth_token": stub.auth_token,
            "from": ["+15005550006"],
            "idempotency": True,
            "timeout_s": 5,
        }
        yield Target(
            "sms",
            "twilio_http",
            config,
            None,
            "bare aiohttp, 1 session, concurrency 50",
            ceiling,
            counts,
            [proc.pid],
        )
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await proc.wait()


@contextlib.asynccontextmanager
async def email_target() -> AsyncIterator[Target]:
    from bench.smtp_ceiling import _serve as serve_sink
    from bench.smtp_ceiling import smtp_ceiling

    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=serve_sink, args=(child,), daemon=True)
    process.start()
    loop = asyncio.get_running_loop()
    port = await loop.run_in_executor(None, parent.recv)
    lock = asyncio.Lock()

    async def ceiling(n: int, run: int) -> float:
        return await smtp_ceiling("127.0.0.1", port, n, 10, run=f"ceiling{run}")

    async def counts() -> Counts:
        async with lock:
            parent.send(True)
            stats = await loop.run_in_executor(None, parent.recv)
        return stats["messages"], stats["unique_recipients"], stats["duplicate_message_ids"]

    config: dict[str, Any] = {"host": "127.0.0.1", "port": port, "tls": "none", "connections": 10}
    config |= {"local_hostname": "bench.localhost", "mail_from": "bounces@shop.example"}
    try:
        label = "bare aiosmtplib, 10 reused connections"
        yield Target("email", "smtp", config, "Shop <news@shop.example>", label, ceiling, counts)
    finally:
        with contextlib.suppress(OSError):
            parent.send(False)
        process.join(5)
        if process.is_alive():
            process.kill()


@contextlib.asynccontextmanager
async def smpp_target() -> AsyncIterator[Target]:
    from bench.smpp_ceiling import smpp_ceiling, start_smsc

    async with start_smsc() as smsc:
        loop = asyncio.get_running_loop()

        async def ceiling(n: int, run: int) -> float:
            with contextlib.redirect_stdout(io.StringIO()):  # it prints its own line
                await smpp_ceiling(smsc.host, smsc.port, min(n, 2000), 64, run=-1 - run)  # warm-up
                return await smpp_ceiling(smsc.host, smsc.port, n, 64, run=run)

        async def counts() -> Counts:
            stats = await loop.run_in_executor(None, smsc.stats)
            return stats["received"], stats["distinct"], stats["received"] - stats["distinct"]

        config: dict[str, Any] = {"host": smsc.host, "port": smsc.port, "system_id": "bench"}
        config |= {"window": 64, "from": ["ACME"]}
        yield Target("smpp", "smpp", config, None, "bare aiosmpplib, 64 in flight", ceiling, counts)


def target(channel: str, *, stub_callbacks: bool = False) -> contextlib.AbstractAsyncContextManager[Target]:
    if channel == "email":
        return email_target()
    if channel == "smpp":
        return smpp_target()
    return sms_target(stub_callbacks)
