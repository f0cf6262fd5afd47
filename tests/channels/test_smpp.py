"""SmppChannel against a real SMPP peer (smpp34's server, see smsc.py) over loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import smpp34

from dispatcher.channels.base import OutboundSms, SmsChannel
from dispatcher.channels.smpp import SmppChannel, smpp_channel_from_config
from dispatcher.core.smpp_parts import reassemble
from dispatcher.core.smpp_receipts import Receipt
from dispatcher.errors import InputError
from tests.channels.smsc import Received, Smsc

SENDER = "ACME"
LONG_GSM = ("Spring sale! {20%} off everything [members only] until Sunday €5 vouchers. " * 6)[:400]
UNICODE = "Весенняя распродажа 😀🎉 скидка 20% на всё до воскресенья! " * 3


def sms(index: int, body: str | None = None, to: str | None = None) -> OutboundSms:
    return OutboundSms(
        index, to or f"+1555{index:07d}", SENDER, body or f"Sale {index}: 20% off", f"k{index}"
    )


@pytest.fixture
async def smsc() -> AsyncIterator[Smsc]:
    server = await Smsc().start()
    yield server
    await server.stop()


def channel_with(server: Smsc, **kwargs: Any) -> SmppChannel:
    handlers = {k: kwargs.pop(k) for k in ("on_receipt", "on_inbound") if k in kwargs}
    config = {
        "host": server.host,
        "port": server.port,
        "system_id": "esme",
        "password": "secret",
        "reconnect_min_delay": 0.05,
        "reconnect_max_delay": 0.2,
        **kwargs,
    }
    return smpp_channel_from_config(config, **handlers)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the condition is state a callback fills in
            await asyncio.sleep(0.01)


def test_is_an_sms_channel() -> None:
    channel: SmsChannel = smpp_channel_from_config({"host": "127.0.0.1", "system_id": "x"})
    assert channel.supports_idempotency is False
    assert channel.name == "smpp"


async def test_500_short_messages_arrive_exactly_once(smsc: Smsc) -> None:
    channel = channel_with(smsc, window=32)
    try:
        messages = [sms(i) for i in range(500)]
        outcomes = await channel.send_batch(messages[:250]) + await channel.send_batch(messages[250:])
    finally:
        await channel.close()
    assert [o.message_id for o in outcomes] == list(range(500))
    assert {o.status for o in outcomes} == {"sent"}
    assert {o.segments for o in outcomes} == {1}
    arrived = [(r.destination, r.short_message.decode()) for r in smsc.received]
    assert sorted(arrived) == sorted((m.to[1:], m.body) for m in messages)  # each once, none extra
    ids = {r.destination: r.message_id for r in smsc.received}
    assert all(o.provider_message_id == ids[m.to[1:]] for m, o in zip(messages, outcomes, strict=True))
    assert {(r.esm_class, r.data_coding, r.dest_addr_ton, r.source) for r in smsc.received} == {
        (0, 0, 1, SENDER)
    }


async def test_long_and_unicode_messages_are_split_and_reassemble(smsc: Smsc) -> None:
    channel = channel_with(smsc)
    try:
        outcomes = await channel.send_batch(
            [sms(1, LONG_GSM, "+15550000001"), sms(2, UNICODE, "+15550000002")]
        )
    finally:
        await channel.close()
    by_destination: dict[str, list[Received]] = defaultdict(list)
    for received in smsc.received:
        by_destination[received.destination].append(received)
    for outcome, destination, text, coding in [
        (outcomes[0], "15550000001", LONG_GSM, 0),
        (outcomes[1], "15550000002", UNICODE, 8),
    ]:
        # the simulator hands over submits from its worker threads, not always in wire order
        parts = sorted(by_destination[destination], key=lambda p: p.decoded().sequence)
        decoded = [p.decoded() for p in parts]
        assert [d.sequence for d in decoded] == list(range(1, len(parts) + 1))
        assert outcome.status == "sent"
        assert outcome.segments == len(parts) > 1
        assert {(p.esm_class, p.data_coding) for p in parts} == {(0x40, coding)}
        assert {(d.reference, d.total) for d in decoded} == {(decoded[0].reference, len(parts))}
        assert [p.short_message[:3] for p in parts] == [b"\x05\x00\x03"] * len(parts)
        assert reassemble(decoded) == text
        # only the last part asks for a receipt, and its id is the message's
        assert [p.registered_delivery for p in parts] == [0] * (len(parts) - 1) + [1]
        assert outcome.provider_message_id == parts[-1].message_id
    assert (
        by_destination["15550000001"][0].decoded().reference
        != by_destination["15550000002"][0].decoded().reference
    )


async def test_receipts_from_the_smsc_reach_on_receipt() -> None:
    smsc = await Smsc(receipts=True).start()
    receipts: list[Receipt] = []

    async def on_receipt(receipt: Receipt) -> None:
        receipts.append(receipt)

    channel = channel_with(smsc, on_receipt=on_receipt)
    try:
        outcomes = await channel.send_batch([sms(i) for i in range(20)] + [sms(99, LONG_GSM)])
        await until(lambda: len(receipts) >= 21)
    finally:
        await channel.close()
        await smsc.stop()
    assert {r.provider_message_id for r in receipts} == {o.provider_message_id for o in outcomes}
    assert len(receipts) == 21  # one per message, also for the three-part one
    assert {r.status for r in receipts} == {"delivered"}


async def test_replies_and_handmade_receipts(smsc: Smsc) -> None:
    receipts: list[Receipt] = []
    replies: list[tuple[str, str, str]] = []
    fail_next = [False]

    async def on_receipt(receipt: Receipt) -> None:
        if fail_next[0]:
            fail_next[0] = False
            raise RuntimeError("database down")
        receipts.append(receipt)

    async def on_inbound(sender: str, to: str, text: str) -> None:
        replies.append((sender, to, text))

    channel = channel_with(smsc, on_receipt=on_receipt, on_inbound=on_inbound)
    try:
        await channel.send_batch([sms(1)])  # opens the bind
        mo = {"source_addr": "15551234567", "source_addr_ton": 1, "destination_addr": SENDER}
        assert await smsc.deliver(b"STOP", **mo) == 0
        udh = bytes.fromhex("050003420201"), bytes.fromhex("050003420202")
        assert (
            await smsc.deliver(udh[1] + "все".encode("utf-16-be"), esm_class=0x40, data_coding=8, **mo) == 0
        )
        assert (
            await smsc.deliver(udh[0] + "Да, ".encode("utf-16-be"), esm_class=0x40, data_coding=8, **mo) == 0
        )
        tlvs = [
            smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, b"abc123\x00"),
            smpp34.Tlv(smpp34.TLV_MESSAGE_STATE, b"\x05"),
        ]
        assert await smsc.deliver(b"", esm_class=0x04, tlvs=tlvs) == 0
        assert (
            await smsc.deliver(b"sub:001 stat:DELIVRD", esm_class=0x04) == 0
        )  # no id: acknowledged, dropped
        fail_next[0] = True
        text = b"id:zz9 sub:001 dlvrd:001 submit date:2311231200 done date:2311231201 stat:DELIVRD err:000"
        assert await smsc.deliver(text, esm_class=0x04) == 0x64  # temporary error: the SMSC retries
        assert await smsc.deliver(text, esm_class=0x04) == 0
    finally:
        await channel.close()
    assert replies == [("+15551234567", SENDER, "STOP"), ("+15551234567", SENDER, "Да, все")]
    assert [(r.provider_message_id, r.status) for r in receipts] == [
        ("abc123", "undelivered"),
        ("zz9", "delivered"),
    ]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0x58, ("transient", "throttled", 1.0)),
        (0x14, ("transient", "throttled", 1.0)),
        (0x08, ("transient", "server_error", None)),
        (0x0B, ("permanent", "invalid_number", None)),
        (0x0A, ("permanent", "rejected", None)),
    ],
)
async def test_error_statuses_are_classified(status: int, expected: tuple[str, str, float | None]) -> None:
    smsc = await Smsc(answer=lambda r: status if r.destination.endswith("13") else 0).start()
    channel = channel_with(smsc)
    try:
        outcomes = await channel.send_batch([sms(i) for i in range(10, 16)])
        again = await channel.send_batch([sms(20)])
    finally:
        await channel.close()
        await smsc.stop()
    failed = outcomes[3]
    assert (failed.status, failed.reason, failed.retry_after) == expected
    assert failed.error_code == f"0x{status:08X}"
    assert failed.possible_duplicate is False
    assert [o.status for o in outcomes[:3] + outcomes[4:] + again] == ["sent"] * 6
    assert smsc.binds == 1  # the bind survived every answer


async def raw_smsc(statuses: list[int]) -> tuple[asyncio.Server, int, list[int]]:
    """A bare SMPP peer answering submit_sm with the given statuses in turn (smpp34 cannot send vendor
    codes: it turns them into ESME_RSYSERR); returns the server, its port and a count of connections."""
    answers = iter(statuses)
    connections = [0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                length, command, _, sequence = struct.unpack("!IIII", await reader.readexactly(16))
                await reader.readexactly(length - 16)
                status, body = 0, b""
                if command == 0x09:  # bind_transceiver
                    body = b"RAW\x00"
                elif command == 0x04:  # submit_sm
                    status = next(answers, 0)
                    body = b"\x00" if status else f"m{sequence}".encode() + b"\x00"
                writer.write(
                    struct.pack("!IIII", 16 + len(body), command | 0x80000000, status, sequence) + body
                )
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], connections


async def test_vendor_statuses_keep_the_bind() -> None:
    server, port, connections = await raw_smsc([0x400, 0, 0x4FF, 0x58])
    channel = smpp_channel_from_config({"host": "127.0.0.1", "port": port, "system_id": "esme"})
    try:
        first = await channel.send_batch([sms(1), sms(2), sms(3)])
        second = await channel.send_batch([sms(4), sms(5)])
    finally:
        await channel.close()
        server.close()
    assert [(o.status, o.reason, o.error_code) for o in first + second] == [
        ("permanent", "rejected", "0x00000400"),
        ("sent", None, None),
        ("permanent", "rejected", "0x000004FF"),
        ("transient", "throttled", "0x00000058"),
        ("sent", None, None),
    ]
    assert first[1].provider_message_id == "m3"  # the id of its answer (the bind used sequence 1)
    assert connections == [1]


async def test_a_part_refused_after_others_were_accepted_is_a_possible_duplicate() -> None:
    smsc = await Smsc(answer=lambda r: 0x58 if r.short_message[5:6] == b"\x02" else 0).start()
    channel = channel_with(smsc)
    try:
        (outcome,) = await channel.send_batch([sms(1, LONG_GSM)])
    finally:
        await channel.close()
        await smsc.stop()
    assert (outcome.status, outcome.reason, outcome.segments) == ("transient", "throttled", 3)
    assert outcome.possible_duplicate is True


async def test_bind_drop_and_reconnect(smsc: Smsc) -> None:
    channel = channel_with(smsc, connect_timeout=0.5)
    try:
        assert {o.status for o in await channel.send_batch([sms(i) for i in range(10)])} == {"sent"}
        await smsc.stop()
        down = await channel.send_batch([sms(i) for i in range(10, 15)])
        assert {(o.status, o.reason, o.possible_duplicate) for o in down} == {
            ("transient", "connection", False)
        }
        await smsc.start()
        await smsc.wait_bound(2)
        back = await channel.send_batch([sms(i) for i in range(20, 30)])
    finally:
        await channel.close()
    assert {o.status for o in back} == {"sent"}
    assert sorted(r.destination for r in smsc.received) == [
        f"1555{i:07d}" for i in [*range(10), *range(20, 30)]
    ]


async def test_submits_in_flight_when_the_bind_drops_are_possible_duplicates() -> None:
    smsc = await Smsc(answer=lambda r: None).start()  # never answers
    channel = channel_with(smsc, window=4)
    try:
        sending = asyncio.create_task(channel.send_batch([sms(i) for i in range(6)]))
        await smsc.wait_for(4)
        await smsc.stop()
        outcomes = await sending
    finally:
        await channel.close()
    written = [(o.status, o.reason, o.possible_duplicate) for o in outcomes[:4]]
    assert written == [("transient", "connection", True)] * 4
    # the two beyond the window never left: no doubt about them
    assert [(o.status, o.possible_duplicate) for o in outcomes[4:]] == [("transient", False)] * 2


async def test_window_bounds_submits_in_flight_and_timeouts_are_ambiguous() -> None:
    smsc = await Smsc(answer=lambda r: None).start()
    channel = channel_with(smsc, window=3, submit_timeout=1.0)
    try:
        outcomes = await channel.send_batch([sms(i) for i in range(8)])
    finally:
        await channel.close()
        await smsc.stop()
    assert smsc.count == 3  # never more than the window on the wire
    assert [(o.reason, o.possible_duplicate) for o in outcomes] == [("timeout", True)] * 3 + [
        ("connection", False)
    ] * 5


async def test_messages_that_cannot_go_never_open_a_bind() -> None:
    channel = smpp_channel_from_config({"host": "127.0.0.1", "port": 9, "system_id": "x"})
    outcomes = await channel.send_batch(
        [
            sms(1, to="+1555abc"),
            OutboundSms(2, "+15550000002", SENDER, "", "k2"),
            OutboundSms(3, "+15550000003", "A sender name too long", "hi", "k3"),
            sms(4, "x" * (153 * 255 + 1)),
        ]
    )
    assert [(o.status, o.reason) for o in outcomes] == [
        ("permanent", "invalid_number"),
        ("permanent", "rejected"),
        ("transient", "provider_config"),
        ("permanent", "rejected"),
    ]
    await channel.close()


async def test_unreachable_smsc_is_transient_connection() -> None:
    channel = channel_with(Smsc(), connect_timeout=0.3)  # never started: nothing listens
    try:
        outcomes = await channel.send_batch([sms(1), sms(2)])
    finally:
        await channel.close()
    assert {(o.status, o.reason, o.possible_duplicate) for o in outcomes} == {
        ("transient", "connection", False)
    }


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"system_id": "x"}, "host"),
        ({"host": "h"}, "system_id"),
        ({"host": "h", "system_id": "x" * 16}, "system_id"),
        ({"host": "h", "system_id": "x", "password": "123456789"}, "password"),
        ({"host": "h", "system_id": "x", "port": 0}, "port"),
        ({"host": "h", "system_id": "x", "port": True}, "port"),
        ({"host": "h", "system_id": "x", "window": 0}, "window"),
        ({"host": "h", "system_id": "x", "submit_timeout": float("nan")}, "submit_timeout"),
        ({"host": "h", "system_id": "x", "registered_delivery": "yes"}, "registered_delivery"),
        ({"host": "h", "system_id": "x", "windw": 3}, "windw"),
        (
            {"host": "h", "system_id": "x", "reconnect_min_delay": 9, "reconnect_max_delay": 1},
            "reconnect_min_delay",
        ),
    ],
)
def test_bad_config_names_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as caught:
        smpp_channel_from_config(config)
    assert field in {detail["field"] for detail in caught.value.details}


def test_config_defaults_and_coercion() -> None:
    channel = smpp_channel_from_config(
        {"host": "h", "system_id": "x", "submit_timeout": 5, "name": "smpp-eu"}
    )
    assert channel.config.submit_timeout == 5.0
    assert isinstance(channel.config.submit_timeout, float)
    assert (channel.config.port, channel.config.window, channel.name) == (2775, 64, "smpp-eu")
