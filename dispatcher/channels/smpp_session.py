"""One persistent SMPP bind: aiosmpplib's ESME with its traffic routed through a :class:`Wire`.

aiosmpplib owns the socket, the bind, enquire_link keepalive and the reconnect loop. Three of its
behaviours are overridden because they would drop the bind or lose work: a deliver_sm it cannot decode
(binary vendor TLVs, a receipt that is all TLVs), an answer with a vendor-specific command_status
(0x400-0x4FF, not in its enum), and a reconnect that silently forgets submits written to the dead socket
(those are failed here as possible duplicates, and parts still queued are handed back as unsent).
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from typing import Final

from aiosmpplib import (  # type: ignore[import-untyped]  # aiosmpplib ships no type information
    ESME,
    DeliverSm,
    DeliverSmResp,
    PduHeader,
    SmppCommand,
    SmppCommandStatus,
    SmppMessage,
)

from dispatcher.channels.smpp_wire import Wire, plug_ins
from dispatcher.logs import get_logger

__all__ = ["DeliverHandler", "SmppSession"]

log = get_logger(__name__)

DeliverHandler = Callable[[DeliverSm], Awaitable[None]]

_HEADER: Final = struct.Struct("!IIII")
_KNOWN_STATUSES: Final = frozenset(int(status) for status in SmppCommandStatus)
_MAX_PDU: Final = 2**16 + 1024


def _after_c_string(pdu: bytes, index: int) -> int:
    return pdu.index(b"\x00", index) + 1


def _sm_length_offset(pdu: bytes) -> int | None:
    """Where sm_length sits in a deliver_sm (fixed fields and C strings walked), None if malformed."""
    try:
        index = _after_c_string(pdu, _HEADER.size) + 2  # service_type; source ton, npi
        index = _after_c_string(pdu, index) + 2  # source_addr; destination ton, npi
        index = _after_c_string(pdu, index) + 3  # destination_addr; esm_class, protocol_id, priority
        index = _after_c_string(pdu, index)  # schedule_delivery_time
        index = _after_c_string(pdu, index) + 4  # validity_period; registered .. sm_default_msg_id
    except ValueError:
        return None
    return index if index < len(pdu) else None


def _rebuilt(pdu: bytes, body: bytes) -> bytes:
    _, command, status, sequence = _HEADER.unpack_from(pdu)
    return _HEADER.pack(_HEADER.size + len(body), command, status, sequence) + body


def _without_tlvs(pdu: bytes) -> bytes:
    """Cut after short_message: aiosmpplib reads unknown TLVs as ASCII and fails on binary vendor ones,
    and the receipt text alone is enough to match it."""
    index = _sm_length_offset(pdu)
    return pdu if index is None else _rebuilt(pdu, pdu[_HEADER.size : index + 1 + pdu[index]])


def _with_placeholder_text(pdu: bytes) -> bytes:
    """Give an empty short_message one space: aiosmpplib refuses a deliver_sm without text, yet a receipt
    may be all TLVs (receipted_message_id, message_state)."""
    index = _sm_length_offset(pdu)
    if index is None or pdu[index] != 0:
        return pdu
    return _rebuilt(pdu, pdu[_HEADER.size : index] + b"\x01 " + pdu[index + 1 :])


_DECODINGS: Final[tuple[Callable[[bytes], bytes], ...]] = (
    lambda pdu: pdu,
    _with_placeholder_text,
    _without_tlvs,
)


class SmppSession(ESME):  # type: ignore[misc]
    """A transceiver bind whose traffic and events go through a :class:`Wire`."""

    def __init__(self, wire: Wire, on_deliver: DeliverHandler, **esme_args: object) -> None:
        self.wire = wire
        self._on_deliver = on_deliver
        super().__init__(**esme_args, **plug_ins(wire))

    async def connect(self) -> None:
        # Called on every (re)connect attempt, so a dead bind's submits are failed before a new one.
        self.wire.bound.clear()
        lost = self.wire.drop_in_flight()
        if lost:
            log.warning("smpp bind lost with submits in flight", lost=lost, host=self.smsc_host)
        try:
            await super().connect()
        except Exception as exc:
            self.wire.last_error = f"{type(exc).__name__}: {exc}"
            self.wire.abandon_queued()
            raise
        self.wire.last_error = None
        self.wire.bound.set()
        log.info("smpp bound", host=self.smsc_host, port=self.smsc_port, system_id=self.system_id)

    async def _get_pdu(self) -> tuple[bytes, PduHeader]:
        # Vendor-specific statuses are not in aiosmpplib's enum and would end the session: keep the
        # real value aside and let the library see ESME_RUNKNOWNERR.
        assert self._reader is not None
        header = await self._reader.readexactly(_HEADER.size)
        length, command, status, sequence = _HEADER.unpack(header)
        if not _HEADER.size <= length <= _MAX_PDU:
            raise ValueError(f"bad PDU length {length}")
        if status not in _KNOWN_STATUSES:
            self.wire.raw_status[sequence] = status
            header = _HEADER.pack(length, command, int(SmppCommandStatus.ESME_RUNKNOWNERR), sequence)
        body = await self._reader.readexactly(length - _HEADER.size)
        return header + body, SmppMessage.parse_header(header)

    async def _handle_request(self, pdu: bytes, header: PduHeader) -> SmppMessage | None:
        if header.smpp_command != SmppCommand.DELIVER_SM:
            return await super()._handle_request(pdu, header)
        message = next(
            (decoded for attempt in _DECODINGS if (decoded := self._decode_deliver(attempt(pdu)))), None
        )
        if message is None:
            log.warning("undecodable deliver_sm refused", pdu=pdu[:64].hex())
            await self._answer(header, SmppCommandStatus.ESME_RX_P_APPN)
            return None
        try:
            await self._on_deliver(message)
        except Exception:
            log.exception("deliver_sm handler failed; the SMSC will redeliver")
            await self._answer(header, SmppCommandStatus.ESME_RX_T_APPN)
            return None
        return message  # aiosmpplib answers deliver_sm_resp ESME_ROK for it

    def _decode_deliver(self, pdu: bytes) -> DeliverSm | None:
        try:
            header = SmppMessage.parse_header(pdu[: _HEADER.size])
            message = DeliverSm.from_pdu(pdu, header, self.default_encoding, self.custom_codecs)
        except (ValueError, IndexError, struct.error):
            return None
        return message if isinstance(message, DeliverSm) else None

    async def _answer(self, header: PduHeader, status: SmppCommandStatus) -> None:
        await self._send_data(DeliverSmResp(sequence_num=header.sequence_num, command_status=status))
