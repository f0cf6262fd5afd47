"""Where a deliver_sm goes: receipts to ``on_receipt``, replies (reassembled) to ``on_inbound``.

A receipt is a deliver_sm whose esm_class says so; its id comes from the ``receipted_message_id`` TLV
when present, else from the text (:mod:`dispatcher.core.smpp_receipts`). A reply in several parts is
held until its last part arrives; unfinished ones are bounded, the oldest dropped first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiosmpplib import TON, DeliverSm  # type: ignore[import-untyped]  # aiosmpplib ships no type information
from aiosmpplib.state import MESSAGE_STATE, RECEIPTED_MESSAGE_ID  # type: ignore[import-untyped]

from dispatcher.core.smpp_receipts import Receipt, parse_receipt
from dispatcher.logs import get_logger

__all__ = ["InboundHandler", "InboundRouter", "ReceiptHandler"]

log = get_logger(__name__)

ReceiptHandler = Callable[[Receipt], Awaitable[None]]
InboundHandler = Callable[[str, str, str], Awaitable[None]]

_MO_PARTS_KEPT: Final = 1_000


class InboundRouter:
    """The deliver_sm handler of one channel; a raising callback makes the SMSC redeliver."""

    def __init__(self, on_receipt: ReceiptHandler | None, on_inbound: InboundHandler | None) -> None:
        self.on_receipt = on_receipt
        self.on_inbound = on_inbound
        self._parts: OrderedDict[tuple[str, int, int], dict[int, str]] = OrderedDict()

    async def __call__(self, message: DeliverSm) -> None:
        text: str = message.short_message or message.message_payload or ""
        if message.is_receipt():
            params = {param.tag: param.value for param in message.optional_params or []}
            receipted = params.get(RECEIPTED_MESSAGE_ID)
            state = params.get(MESSAGE_STATE)
            receipt = parse_receipt(
                text,
                receipted_message_id=receipted if isinstance(receipted, str) else None,
                message_state=state if isinstance(state, int) else None,
            )
            if receipt is None:
                log.warning("smpp receipt without a message id ignored", text=text[:80])
            elif self.on_receipt is not None:
                await self.on_receipt(receipt)
            return
        sender = _e164(message.source)
        complete = self._join_reply(sender, message, text)
        if complete is not None and self.on_inbound is not None:
            await self.on_inbound(sender, _e164(message.destination), complete)

    def _join_reply(self, sender: str, message: DeliverSm, text: str) -> str | None:
        reference, sequence, total = message.get_segmentation_data()
        if total <= 1:
            return text
        key = (sender, reference, total)
        parts = self._parts.setdefault(key, {})
        parts[sequence] = text
        if len(parts) < total:
            if len(self._parts) > _MO_PARTS_KEPT:
                self._parts.popitem(last=False)
            return None
        del self._parts[key]
        return "".join(parts[index] for index in sorted(parts))


def _e164(address: Any) -> str:
    number: str = address.number
    if address.ton == TON.INTERNATIONAL and number.isdigit():
        return "+" + number
    return number
