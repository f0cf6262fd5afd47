"""An SMSC simulator for tests and benchmarks: smpp34's server (a Rust SMPP 3.4 peer) driven in-process.

smpp34's ``Server`` accepts any bind and hands every submit_sm to Python, which answers it here: accepted
with a fresh hex message id, or rejected with the status ``answer`` chooses. Everything received is kept
(``received``) so a test can check what reached the wire, byte for byte. With ``receipts=True`` a
delivery receipt goes back over the same bind for every part that asked for one. ``deliver`` pushes any
deliver_sm (a reply, a hand-made receipt) to the bound client.

smpp34 cannot report the port it bound, so ``free_port`` picks one first; ``restart`` reuses it, which is
how a test drops the bind and lets the client reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import smpp34

from dispatcher.core.smpp_parts import DecodedPart, decode_short_message
from dispatcher.core.smpp_receipts import format_receipt

#: The command_status to answer a submit_sm with; None holds it unanswered (kept in ``held``).
Answer = Callable[["Received"], int | None]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Received:
    """One submit_sm as the SMSC saw it, and what it answered."""

    session_id: str
    source: str
    destination: str
    dest_addr_ton: int
    esm_class: int
    data_coding: int
    registered_delivery: int
    short_message: bytes
    status: int = 0
    message_id: str | None = None

    def decoded(self) -> DecodedPart:
        return decode_short_message(self.short_message, self.data_coding, bool(self.esm_class & 0x40))


class Smsc:
    """Start with ``await Smsc().start()``; stop with ``await smsc.stop()``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        answer: Answer | None = None,
        receipts: bool = False,
        receipt_stat: str = "DELIVRD",
        keep: bool = True,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.answer = answer
        self.receipts = receipts
        self.receipt_stat = receipt_stat
        self.keep = keep  # benchmarks only count
        self.received: list[Received] = []
        self.held: list[Any] = []
        self.count = 0
        self.sessions: dict[str, Any] = {}
        self.binds = 0
        self._ids = itertools.count(0x1000)
        self._server: Any = None
        self._loop: asyncio.Task[None] | None = None
        self._pushes: set[asyncio.Task[Any]] = set()
        self._arrived = asyncio.Condition()

    async def start(self) -> Smsc:
        self._server = smpp34.Server(self.host, self.port, system_id="SIMSC")
        await self._server.start()
        self._loop = asyncio.create_task(self._serve())
        return self

    async def stop(self) -> None:
        """Close the listener, then unbind every client (a stopped smpp34 server keeps open sessions)."""
        for task in [self._loop, *self._pushes]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._pushes.clear()
        self._loop = None
        if self._server is not None:
            await self._server.stop()
            self._server = None
        for esme in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(esme.unbind(), 2.0)
        self.sessions.clear()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Until ``count`` submit_sm have arrived (TimeoutError otherwise)."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: self.count >= count)

    async def wait_bound(self, binds: int = 1, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: self.binds >= binds)

    async def deliver(self, short_message: bytes, destination_addr: str = "ACME", **fields: Any) -> int:
        """Push one deliver_sm to the latest bound client; returns its deliver_sm_resp command_status."""
        esme = list(self.sessions.values())[-1]
        resp = await esme.deliver_sm(destination_addr, short_message, **fields)
        return int(resp.command_status)

    async def _serve(self) -> None:
        while True:
            event = await self._server.next()
            if isinstance(event, smpp34.SubmitSmEvent):
                await self._on_submit(event)
            elif isinstance(event, smpp34.Esme):
                self.sessions[event.session_id] = event
                self.binds += 1
                async with self._arrived:
                    self._arrived.notify_all()
            elif isinstance(event, smpp34.Unbound):
                self.sessions.pop(event.session_id, None)

    async def _on_submit(self, event: Any) -> None:
        seen = Received(
            event.session_id,
            event.source_addr,
            event.destination_addr,
            event.dest_addr_ton,
            event.esm_class,
            event.data_coding,
            event.registered_delivery,
            bytes(event.short_message),
        )
        status = self.answer(seen) if self.answer else 0
        if status is None:
            self.held.append(event)
            message_id = None
        elif status:
            event.reject(status)
            message_id = None
        else:
            message_id = f"{next(self._ids):x}"
            event.accept(message_id)
        if self.keep:
            self.received.append(replace(seen, status=status, message_id=message_id))
        self.count += 1
        async with self._arrived:
            self._arrived.notify_all()
        if message_id and self.receipts and seen.registered_delivery & 0x01:
            task = asyncio.create_task(self._receipt(seen, message_id))
            self._pushes.add(task)
            task.add_done_callback(self._pushes.discard)

    async def _receipt(self, seen: Received, message_id: str) -> None:
        text = format_receipt(message_id, self.receipt_stat, error_code="000")
        esme = self.sessions.get(seen.session_id)
        if esme is not None:
            await esme.deliver_sm(
                source_addr=seen.destination,
                destination_addr=seen.source,
                esm_class=0x04,
                short_message=text.encode("ascii"),
            )
