"""The SMPP ceiling: submit_sm/s from a bare aiosmpplib client, 64 in flight, to the smpp34 simulator.

This is the figure issue 6's dispatch benchmark compares against. The simulator (tests/channels/smsc.py,
smpp34's Rust server answered from Python) runs in its own process, as a real SMSC would; the client is
aiosmpplib's ESME with nothing of dispatcher in it but a semaphore for the window and a dict for the
sequence numbers (its own correlator rescans every stored id on each call, which is quadratic over
50,000 messages). Then the same N through ``SmppChannel.send_batch`` (batches of 1,000) to show what the
channel costs on top. The simulator counts what it received and how many (destination, text) pairs
were distinct, so every run also checks exactly-once.

    .venv/bin/python bench/smpp_ceiling.py [-n 50000] [--in-flight 64] [--repeat 3]

``start_smsc`` is reusable (bench/dispatch.py): ``async with start_smsc() as smsc: ... smsc.port``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from aiosmpplib import (
    ESME,
    AbstractBroker,
    AbstractCorrelator,
    AbstractHook,
    PhoneNumber,
    SmppMessage,
    SubmitSm,
    SubmitSmResp,
)
from aiosmpplib.state import NPI, TON

from dispatcher.channels.base import OutboundSms
from dispatcher.channels.smpp import smpp_channel_from_config

BODY = "Spring sale: 20% off everything until Sunday. Reply STOP to opt out."


# ------------------------------------------------------------------------------------------- simulator


def _serve(conn: Connection, host: str, port: int, receipts: bool) -> None:
    """Simulator process: answers "stats" with its counters and CPU seconds, "stop" by exiting."""
    from tests.channels.smsc import Smsc  # smpp34 is a dev dependency: only the child needs it

    async def main() -> None:
        seen: set[int] = set()
        smsc = Smsc(host, port, receipts=receipts, keep=False)

        def answer(received: Any) -> int:
            seen.add(hash((received.destination, received.short_message)))
            return 0

        smsc.answer = answer
        await smsc.start()
        conn.send(smsc.port)
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, conn.recv) == "stats":
            conn.send(
                {
                    "received": smsc.count,
                    "distinct": len(seen),
                    "binds": smsc.binds,
                    "cpu": time.process_time(),
                }
            )
        await smsc.stop()

    asyncio.run(main())
    conn.close()
    os._exit(0)  # smpp34's tokio runtime can crash while the interpreter tears down


@dataclass
class SmscProcess:
    host: str
    port: int
    _conn: Connection

    def stats(self) -> dict[str, Any]:
        """{"received", "distinct", "binds", "cpu"} so far."""
        self._conn.send("stats")
        result: dict[str, Any] = self._conn.recv()
        return result


@contextlib.asynccontextmanager
async def start_smsc(
    host: str = "127.0.0.1", port: int = 0, *, receipts: bool = False
) -> AsyncIterator[SmscProcess]:
    """The smpp34 simulator in a child process (port 0: a free one), stopped on exit."""
    from tests.channels.smsc import free_port

    port = port or free_port(host)
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(child, host, port, receipts))
    process.start()
    try:
        bound = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
        yield SmscProcess(host, bound, parent)
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        process.join(5)
        if process.is_alive():
            process.kill()


# ---------------------------------------------------------------------------------------------- client


class _Window(AbstractHook):
    def __init__(self, in_flight: int, n: int) -> None:
        self.slots = asyncio.Semaphore(in_flight)
        self.answered = 0
        self.failed = 0
        self.done = asyncio.Event()
        self.n = n

    async def sending(self, smpp_message: SmppMessage, pdu: bytes, client_id: str) -> None:
        return None

    async def received(self, smpp_message: SmppMessage | None, pdu: bytes, client_id: str) -> None:
        if isinstance(smpp_message, SubmitSmResp):
            self.answered += 1
            self.failed += int(smpp_message.command_status) != 0
            self.slots.release()
            if self.answered == self.n:
                self.done.set()

    async def send_error(self, smpp_message: SmppMessage, error: Exception, client_id: str) -> None:
        return None


class _Requests(AbstractCorrelator):
    def __init__(self) -> None:
        self.by_sequence: dict[int, SmppMessage] = {}

    def get_cumulated_status(self, ref_num: int) -> int:
        return 0

    async def expired(self, smpp_message: SmppMessage) -> None:
        return None

    async def put(self, smpp_message: SmppMessage) -> None:
        self.by_sequence[smpp_message.sequence_num] = smpp_message

    async def put_delivery(self, smsc_message_id: str, submit_sm: SubmitSm) -> None:
        return None

    async def put_delivery_segmented(self, deliver_sm: Any) -> Any:
        return deliver_sm

    async def get(self, response: SmppMessage) -> SmppMessage | None:
        return self.by_sequence.pop(response.sequence_num, None)

    async def get_segmented(self, smpp_seq_num: int, remove: bool = False) -> tuple[None, int]:
        return None, 0

    async def get_delivery(self, receipt: Any) -> None:
        return None


class _Queue(AbstractBroker):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[SmppMessage] = asyncio.Queue()

    async def enqueue(self, message: SmppMessage) -> None:
        self.queue.put_nowait(message)

    async def dequeue(self) -> SmppMessage:
        return await self.queue.get()


def _to(i: int) -> str:
    return f"1555{i % 10_000_000:07d}"


async def smpp_ceiling(host: str, port: int, n: int, in_flight: int = 64, *, run: int = 0) -> float:
    """Messages/s of a bare aiosmpplib ESME submitting ``n`` short messages with ``in_flight`` in flight."""
    window, broker = _Window(in_flight, n), _Queue()
    esme = ESME(
        smsc_host=host,
        smsc_port=port,
        system_id="bench",
        password="bench",
        hook=window,
        broker=broker,
        correlator=_Requests(),
        log_level=logging.CRITICAL,
    )
    starter = asyncio.create_task(esme.start())
    source = PhoneNumber("ACME", TON.ALPHANUMERIC, NPI.UNKNOWN)
    started = time.perf_counter()
    for i in range(n):
        await window.slots.acquire()
        destination = PhoneNumber(_to(i), TON.INTERNATIONAL, NPI.ISDN)
        await broker.enqueue(SubmitSm(short_message=f"{BODY} r{run}", source=source, destination=destination))
    await window.done.wait()
    elapsed = time.perf_counter() - started
    await esme.stop()
    starter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starter
    assert window.failed == 0, f"{window.failed} submits refused"
    rate = n / elapsed
    print(f"  bare aiosmpplib, {in_flight} in flight: {n:,} in {elapsed:.2f} s = {rate:,.0f} messages/s")
    return rate


async def channel_rate(host: str, port: int, n: int, in_flight: int = 64, *, run: int = 0) -> float:
    """Messages/s through SmppChannel.send_batch in batches of 1,000 (bind included, as in a worker)."""
    channel = smpp_channel_from_config(
        {"host": host, "port": port, "system_id": "bench", "window": in_flight}
    )
    messages = [OutboundSms(i, "+" + _to(i), "ACME", f"{BODY} c{run}", f"k{i}") for i in range(n)]
    started = time.perf_counter()
    try:
        for start in range(0, n, 1000):
            outcomes = await channel.send_batch(messages[start : start + 1000])
            assert all(o.status == "sent" for o in outcomes), {o.reason for o in outcomes}
    finally:
        await channel.close()
    elapsed = time.perf_counter() - started
    rate = n / elapsed
    print(f"  SmppChannel.send_batch, window {in_flight}: {n:,} in {elapsed:.2f} s = {rate:,.0f} messages/s")
    return rate


async def measure(n: int, in_flight: int, repeat: int) -> None:
    async with start_smsc() as smsc:
        await smpp_ceiling(smsc.host, smsc.port, min(n, 2000), in_flight, run=-1)  # warm-up
        before = smsc.stats()
        bare, chan = [], []
        for run in range(repeat):
            bare.append(await smpp_ceiling(smsc.host, smsc.port, n, in_flight, run=run))
            chan.append(await channel_rate(smsc.host, smsc.port, n, in_flight, run=run))
        after = smsc.stats()
    ceiling, through = statistics.median(bare), statistics.median(chan)
    print(
        f"median ceiling {ceiling:,.0f}/s; through SmppChannel {through:,.0f}/s"
        f" (ratio {through / ceiling:.2f})"
    )
    received = after["received"] - before["received"]
    distinct = after["distinct"] - before["distinct"]
    expected = 2 * n * repeat
    verdict = "exactly once" if received == distinct == expected else f"MISMATCH (expected {expected:,})"
    cpu = (after["cpu"] - before["cpu"]) / max(received, 1) * 1e6
    print(
        f"simulator received {received:,}, distinct {distinct:,}: {verdict}; simulator {cpu:.0f} µs/message"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", type=int, default=50_000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"SMPP ceiling, N={args.n:,}, {os.cpu_count()} cores")
    asyncio.run(measure(args.n, args.in_flight, args.repeat))


if __name__ == "__main__":
    main()
