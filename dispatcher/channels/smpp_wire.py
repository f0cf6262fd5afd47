"""The plug-in points of aiosmpplib's ESME, filled for windowed submits matched by sequence number.

aiosmpplib takes work from a broker and reports through a hook. Here the broker is an in-memory queue of
pre-split parts, the hook ties each ``submit_sm`` to its sequence number the moment it is written (before
the write, so a fast answer cannot race it) and resolves it on the matching ``submit_sm_resp`` or
generic_nack, and the correlator only remembers requests until answered (aiosmpplib's own rescans every
entry on every call and keeps every message id for three days). A :class:`Wire` holds that shared state
for one bind, and the window: a semaphore slot per part from queueing to answer.
"""

from __future__ import annotations

import asyncio
import random
from typing import NamedTuple

from aiosmpplib import (  # type: ignore[import-untyped]  # aiosmpplib ships no type information
    AbstractBroker,
    AbstractCorrelator,
    AbstractHook,
    AbstractRetryTimer,
    AbstractThrottleHandler,
    DeliverSm,
    DeliverSmResp,
    GenericNack,
    SmppMessage,
    SubmitSm,
    SubmitSmResp,
)
from aiosmpplib.correlator import SegmentStatus  # type: ignore[import-untyped]
from aiosmpplib.state import COMMAND_RESPONSE_MAP  # type: ignore[import-untyped]

__all__ = ["Backoff", "Failure", "PartResult", "PendingPart", "Wire", "plug_ins"]

Failure = str  # "lost" | "timeout" | "unsent" | "invalid"


class PartResult(NamedTuple):
    """The answer to one submit_sm: a command_status and message id, or why there is none."""

    status: int | None
    message_id: str | None = None
    failure: Failure | None = None


class PendingPart:
    """One submit_sm between the queue and its answer; resolved exactly once."""

    __slots__ = ("future", "sequence", "token", "written")

    def __init__(self, token: str, future: asyncio.Future[PartResult]) -> None:
        self.token = token
        self.future = future
        self.sequence = 0
        self.written = False


class Wire:
    """State shared by the broker, hook, correlator and session of one bind."""

    def __init__(self, window: int) -> None:
        self.window = asyncio.Semaphore(window)
        self.queue: asyncio.Queue[SubmitSm] = asyncio.Queue()
        self.queued: dict[str, PendingPart] = {}
        self.in_flight: dict[int, PendingPart] = {}
        self.requests: dict[int, SmppMessage] = {}
        self.raw_status: dict[int, int] = {}
        self.bound = asyncio.Event()
        self.last_error: str | None = None

    def resolve(self, pending: PendingPart, result: PartResult) -> None:
        if not pending.future.done():
            pending.future.set_result(result)
            self.window.release()

    def drop_in_flight(self) -> int:
        """The socket died: nothing written to it will be answered any more."""
        lost = list(self.in_flight.values())
        self.in_flight.clear()
        self.requests.clear()
        self.raw_status.clear()
        for pending in lost:
            self.resolve(pending, PartResult(None, failure="lost"))
        return len(lost)

    def abandon_queued(self) -> None:
        """No bind to send them on: waiting out the batch deadline would only delay the retry."""
        for pending in list(self.queued.values()):
            self.abandon(pending, "unsent")

    def abandon(self, pending: PendingPart, failure: Failure) -> None:
        """Stop waiting for a part: skip it if still queued, ignore its late answer if written."""
        self.queued.pop(pending.token, None)
        if pending.written:
            self.in_flight.pop(pending.sequence, None)
        self.resolve(pending, PartResult(None, failure=failure))


class _Broker(AbstractBroker):  # type: ignore[misc]
    def __init__(self, wire: Wire) -> None:
        self._wire = wire

    async def enqueue(self, message: SmppMessage) -> None:
        raise NotImplementedError("parts are queued by the channel")

    async def dequeue(self) -> SmppMessage:
        while True:
            message = await self._wire.queue.get()
            if message.log_id in self._wire.queued:  # abandoned parts are skipped, never sent
                return message


class _Hook(AbstractHook):  # type: ignore[misc]
    def __init__(self, wire: Wire) -> None:
        self._wire = wire

    async def sending(self, smpp_message: SmppMessage, pdu: bytes, client_id: str) -> None:
        wire = self._wire
        if smpp_message.smpp_command not in COMMAND_RESPONSE_MAP:
            return  # a response to the SMSC: its sequence number is the SMSC's, not ours
        wire.requests[smpp_message.sequence_num] = smpp_message
        if isinstance(smpp_message, SubmitSm):
            pending = wire.queued.pop(smpp_message.log_id, None)
            if pending is not None:
                pending.written = True
                pending.sequence = smpp_message.sequence_num
                wire.in_flight[pending.sequence] = pending

    async def received(self, smpp_message: SmppMessage | None, pdu: bytes, client_id: str) -> None:
        if not isinstance(smpp_message, SubmitSmResp | GenericNack) or isinstance(
            smpp_message, DeliverSmResp
        ):
            return
        wire = self._wire
        sequence = smpp_message.sequence_num
        status = wire.raw_status.pop(sequence, int(smpp_message.command_status))
        pending = wire.in_flight.pop(sequence, None)
        if pending is not None:
            message_id = smpp_message.message_id if isinstance(smpp_message, SubmitSmResp) else None
            wire.resolve(pending, PartResult(status, message_id or None))

    async def send_error(self, smpp_message: SmppMessage, error: Exception, client_id: str) -> None:
        # A ValueError means the PDU could not be built: it never left, and never will.
        if isinstance(error, ValueError) and isinstance(smpp_message, SubmitSm):
            pending = self._wire.queued.pop(smpp_message.log_id, None)
            if pending is not None:
                self._wire.resolve(pending, PartResult(None, failure="invalid"))


class _Correlator(AbstractCorrelator):  # type: ignore[misc]
    """Requests by sequence number until answered; receipts are matched by the channel's caller."""

    def __init__(self, wire: Wire) -> None:
        self._wire = wire

    def get_cumulated_status(self, ref_num: int) -> int:
        return 0

    async def expired(self, smpp_message: SmppMessage) -> None:
        return None

    async def put(self, smpp_message: SmppMessage) -> None:
        return None  # registered by the hook before the write, so a fast answer cannot race it

    async def put_delivery(self, smsc_message_id: str, submit_sm: SubmitSm) -> None:
        return None

    async def put_delivery_segmented(self, deliver_sm: DeliverSm) -> DeliverSm | None:
        return deliver_sm

    async def get(self, response: SmppMessage) -> SmppMessage | None:
        return self._wire.requests.pop(response.sequence_num, None)

    async def get_segmented(
        self, smpp_seq_num: int, remove: bool = False
    ) -> tuple[SegmentStatus | None, int]:
        return None, 0

    async def get_delivery(self, receipt: DeliverSm) -> SubmitSm | None:
        return None


class _NeverHold(AbstractThrottleHandler):  # type: ignore[misc]
    """Throttled answers become transient outcomes; the engine's rate limiter does the backing off."""

    async def throttled(self) -> None:
        return None

    async def not_throttled(self) -> None:
        return None

    async def allow_request(self) -> bool:
        return True

    async def throttle_delay(self) -> float:
        return 0.0


class Backoff(AbstractRetryTimer):  # type: ignore[misc]
    """Reconnect delays doubling from ``minimum`` to ``maximum`` seconds, with jitter against herds."""

    def __init__(self, minimum: float, maximum: float) -> None:
        self._minimum = minimum
        self._maximum = maximum
        self._next = minimum

    async def wait(self) -> None:
        await asyncio.sleep(self._next * random.uniform(0.8, 1.2))
        self._next = min(self._maximum, self._next * 2)

    def reset(self) -> None:
        self._next = self._minimum

    def next_delay(self) -> float:
        return self._next


def plug_ins(wire: Wire) -> dict[str, object]:
    """The ESME constructor arguments that route its traffic through ``wire``."""
    return {
        "hook": _Hook(wire),
        "broker": _Broker(wire),
        "correlator": _Correlator(wire),
        "throttle_handler": _NeverHold(),
    }
