"""Inbound use-cases on both databases: signatures, keywords, e-mail reports, opens and conversions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatcher.channels.twilio_http import sign
from dispatcher.core.inbound import email_signature
from dispatcher.core.opens import message_token
from dispatcher.errors import InputError, NotFoundError, PermissionDeniedError
from dispatcher.ops import email_events, inbound, opens
from dispatcher.storage.engine import create_engine, session_factory
from tests import inbound_seed as seed
from tests.core.test_dsn import POSTFIX

NOW = datetime.now(UTC)
URL = "https://dispatcher.example/hooks/twilio/{}/inbound"
SECRET = "test-secret"


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(db_url)
    yield session_factory(engine)
    await engine.dispose()


def reply_form(sender: str, body: str, sid: str) -> list[tuple[str, str]]:
    return [("From", sender), ("To", "+15005550006"), ("Body", body), ("MessageSid", sid), ("NumMedia", "0")]


async def _inbound(
    session: AsyncSession, s: seed.Seeded, form: list[tuple[str, str]]
) -> inbound.InboundAnswer:
    url = URL.format(s.provider_id)
    signature = sign(seed.TWILIO_TOKEN, url, form)
    return await inbound.sms_inbound(session, s.provider_id, form, signature, url, now=NOW)


async def test_stop_variants_suppress_once_and_answer_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        s = await seed.seed(session, count=2)
        number = s.addresses[0]
        answers = [
            await _inbound(session, s, reply_form(number, text, f"SMin{n}"))
            for n, text in enumerate(["STOP", "stop", " Stop! ", "ＳＴＯＰ", "unsubscribe"])
        ]
        assert [a.kind for a in answers] == ["optout"] * 5
        assert [a.reply_text is not None for a in answers] == [True, False, False, False, False]
        assert await seed.suppressions(session, s.workspace_id) == [("sms", number, "stop")]
        assert await seed.consents(session, s.workspace_id) == [(number, False)]
        optouts = await seed.events(session, s.workspace_id, "optout")
        assert {e.message_id for e in optouts} == {s.message_ids[0]}
        assert len(optouts) == 5  # five messages received, one contact opted out

        again = await _inbound(session, s, reply_form(number, "STOP", "SMin0"))  # a repeat delivery
        assert (again.first, again.reply_text) == (False, None)
        assert len(await seed.events(session, s.workspace_id)) == 5


async def test_start_lifts_only_a_stop(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        s = await seed.seed(session, count=2)
        stopped, bounced = s.addresses
        await _inbound(session, s, reply_form(stopped, "STOP", "SM1"))
        await _inbound(session, s, reply_form(stopped, "START", "SM2"))
        assert await seed.suppressions(session, s.workspace_id) == []
        assert await seed.consents(session, s.workspace_id) == [(stopped, False), (stopped, True)]

        from dispatcher.storage.suppressions import suppress_address

        await suppress_address(
            session,
            workspace_id=s.workspace_id,
            channel="sms",
            address=bounced,
            reason="hard_bounce",
            source="t",
            now=NOW,
        )
        answer = await _inbound(session, s, reply_form(bounced, "start", "SM3"))
        assert (answer.kind, answer.reply_text) == ("optin", None)
        assert await seed.suppressions(session, s.workspace_id) == [("sms", bounced, "hard_bounce")]
        assert len(await seed.events(session, s.workspace_id, "optin")) == 2


async def test_help_and_replies(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        s = await seed.seed(
            session, count=1, provider_config={"auth_token": seed.TWILIO_TOKEN, "help_reply": "Call us"}
        )
        help_answer = await _inbound(session, s, reply_form(s.addresses[0], "help", "SMh"))
        assert (help_answer.kind, help_answer.reply_text) == ("help", "Call us")
        reply = await _inbound(session, s, reply_form(s.addresses[0], "What time do you open?", "SMr"))
        assert (reply.kind, reply.reply_text) == ("reply", None)
        stranger = await _inbound(session, s, reply_form("+14155559999", "who is this", "SMs"))
        assert stranger.first
        [attributed, unattributed] = await seed.events(session, s.workspace_id, "reply")
        assert attributed.message_id == s.message_ids[0]
        assert attributed.payload["text"] == "What time do you open?"
        assert unattributed.message_id is None


async def test_signature_and_provider_checks(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        s = await seed.seed(session, count=1)
        email = await seed.seed(session, channel="email", count=1)
        form = reply_form(s.addresses[0], "STOP", "SMx")
        url = URL.format(s.provider_id)
        bad = [
            None,
            "",
            sign("wrong-token", url, form),
            sign(seed.TWILIO_TOKEN, url + "?x=1", form),  # another URL
            sign(seed.TWILIO_TOKEN, url, [*form[:-1], ("NumMedia", "1")]),  # another form
        ]
        for signature in bad:
            with pytest.raises(PermissionDeniedError):
                await inbound.sms_inbound(session, s.provider_id, form, signature, url, now=NOW)
        for provider_id in (email.provider_id, 10**9):
            with pytest.raises(NotFoundError):
                await inbound.sms_inbound(
                    session, provider_id, form, sign(seed.TWILIO_TOKEN, url, form), url, now=NOW
                )
        assert await seed.suppressions(session, s.workspace_id) == []


async def _status(
    session: AsyncSession, s: seed.Seeded, index: int, status: str, code: str | None = None
) -> bool:
    url = f"https://dispatcher.example/hooks/twilio/{s.provider_id}/status"
    form = [("MessageSid", s.sid(index)), ("MessageStatus", status), ("To", s.addresses[index])]
    if code:
        form.append(("ErrorCode", code))
    result = await inbound.sms_status(
        session, s.provider_id, form, sign(seed.TWILIO_TOKEN, url, form), url, now=NOW
    )
    return result.applied


async def test_invalid_number_receipts_suppress(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        s = await seed.seed(session, count=3)
        assert await _status(session, s, 0, "undelivered", "30005")  # unknown destination
        assert await _status(session, s, 1, "undelivered", "30003")  # unreachable: maybe switched off
        assert await _status(session, s, 2, "failed", "21610")  # the number said STOP at the carrier
        assert not await _status(session, s, 0, "delivered")
        assert await seed.suppressions(session, s.workspace_id) == [
            ("sms", s.addresses[0], "hard_bounce"),
            ("sms", s.addresses[2], "stop"),
        ]


def _signed(events: object) -> tuple[bytes, str]:
    body = json.dumps(events).encode()
    return body, email_signature(seed.WEBHOOK_SECRET, body)


async def test_email_events_count_once_whatever_the_path(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        s = await seed.seed(session, channel="email", count=4)

        def mid(i: int) -> str:
            return f"<dsp-{s.campaign_id}-{s.message_ids[i]}@shop.example>"

        items = [
            {"event_id": "e1", "type": "delivered", "recipient": s.addresses[0], "message_id": mid(0)},
            {
                "event_id": "e2",
                "type": "bounce",
                "recipient": s.addresses[1],
                "message_id": mid(1),
                "status": "5.1.1",
            },
            {
                "event_id": "e3",
                "type": "bounce",
                "recipient": s.addresses[2],
                "message_id": mid(2),
                "status": "4.2.2",
            },
            {"event_id": "e4", "type": "deferred", "recipient": s.addresses[3], "message_id": mid(3)},
            {"event_id": "e5", "type": "complaint", "recipient": s.addresses[0], "message_id": mid(0)},
        ]
        for _ in range(3):
            body, signature = _signed(items)
            await email_events.email_events(session, s.provider_id, body, signature, now=NOW)
        # the same hard bounce told again by an RFC 3464 message
        dsn = POSTFIX.replace(b"nobody@example.net", s.addresses[1].encode()).replace(
            b"dsp-12-345", f"dsp-{s.campaign_id}-{s.message_ids[1]}".encode()
        )
        tally = await email_events.email_dsn(
            session, s.provider_id, dsn, email_signature(seed.WEBHOOK_SECRET, dsn), now=NOW
        )
        assert (tally.received, tally.applied, tally.unknown) == (1, 0, 0)

        assert await seed.kinds(session, s.workspace_id) == {"delivered": 1, "bounce": 2, "complaint": 1}
        states = await seed.states(session, s.campaign_id)
        assert [states[m] for m in s.message_ids] == ["delivered", "failed", "failed", "sent"]
        assert await seed.suppressions(session, s.workspace_id) == [
            ("email", s.addresses[1], "hard_bounce"),
            ("email", s.addresses[0], "complaint"),
        ]


async def test_email_hooks_check_signature_and_shape(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        s = await seed.seed(session, channel="email", count=1)
        body, signature = _signed([{"type": "bounce", "recipient": "a@b.example", "message_id": "x"}])
        with pytest.raises(PermissionDeniedError):
            await email_events.email_events(session, s.provider_id, body + b" ", signature, now=NOW)
        with pytest.raises(PermissionDeniedError):
            await email_events.email_dsn(session, s.provider_id, POSTFIX, None, now=NOW)
        for junk in ([{"type": "opened", "recipient": "a@b.example"}], {"events": "no"}, [1]):
            body, signature = _signed(junk)
            with pytest.raises(InputError):
                await email_events.email_events(session, s.provider_id, body, signature, now=NOW)


async def test_opens_person_and_machine_once_each(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        s = await seed.seed(session, channel="email", count=1)
        token = message_token(SECRET, s.workspace_id, s.message_ids[0])
        chrome = "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 Version/17.0 Safari/605.1.15"
        firsts = [
            await opens.record_open(session, SECRET, token, agent, now=NOW)
            for agent in (chrome, "Barracuda", chrome, "Barracuda", None)
        ]
        assert firsts == [True, True, False, False, False]
        assert not await opens.record_open(session, "other-secret", token, chrome, now=NOW)
        other = message_token(SECRET, s.workspace_id + 1, s.message_ids[0])  # signed, but not its workspace
        assert not await opens.record_open(session, SECRET, other, chrome, now=NOW)
        assert sorted(e.machine for e in await seed.events(session, s.workspace_id, "open")) == [False, True]
        # fetched right after sending: a prefetch
        fresh = await seed.seed(session, channel="email", count=1)
        (await seed.message(session, fresh.message_ids[0])).sent_at = NOW - timedelta(seconds=2)
        await session.flush()
        fresh_token = message_token(SECRET, fresh.workspace_id, fresh.message_ids[0])
        assert await opens.record_open(session, SECRET, fresh_token, chrome, now=NOW)
        [prefetch] = [
            e
            for e in await seed.events(session, s.workspace_id, "open")
            if e.message_id == fresh.message_ids[0]
        ]
        assert prefetch.machine


async def test_conversions(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        s = await seed.seed(session, count=2)
        token = message_token(SECRET, s.workspace_id, s.message_ids[0])
        common = {"secret": SECRET, "currency": "EUR", "now": NOW}
        first = await opens.record_conversion(
            session, s.workspace_id, token=token, contact_id=None, campaign_id=None,
            value=Decimal("19.90"), external_id="order-1", **common,
        )  # fmt: skip
        again = await opens.record_conversion(
            session, s.workspace_id, token=None, contact_id=s.contact_ids[1], campaign_id=s.campaign_id,
            value=Decimal("5"), external_id="order-1", **common,
        )  # fmt: skip
        assert (first.created, again.created, again.event.id) == (True, False, first.event.id)
        assert (first.event.message_id, first.event.value) == (s.message_ids[0], Decimal("19.90"))
        by_contact = await opens.record_conversion(
            session, s.workspace_id, token=None, contact_id=s.contact_ids[1], campaign_id=s.campaign_id,
            value=None, external_id="order-2", **common,
        )  # fmt: skip
        assert by_contact.event.message_id == s.message_ids[1]
        with pytest.raises(NotFoundError):
            await opens.record_conversion(
                session, s.workspace_id + 1, token=token, contact_id=None, campaign_id=None,
                value=None, external_id="order-3", **common,
            )  # fmt: skip
        assert len(await seed.events(session, s.workspace_id, "conversion")) == 2
