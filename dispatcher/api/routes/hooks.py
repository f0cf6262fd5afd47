"""Public webhooks (no API key, signature-checked) and the open pixel.

``POST /hooks/twilio/{provider_id}/status`` and ``/inbound`` take Twilio-style forms signed with
``X-Twilio-Signature``; ``POST /hooks/email/{provider_id}/events`` (JSON) and ``/dsn`` (a raw RFC 3464
bounce) carry ``X-Dispatcher-Signature: sha256=<hex HMAC of the body>`` made with the provider's
``webhook_secret``. Signatures are checked against the URL we are reachable at (``public_base_url`` + the
request's path and query), not the one the request arrived on: behind a proxy those differ.
A bad or missing signature is a 403, an unknown provider a 404; a repeat delivery is a 2xx that changes
nothing, so the provider stops retrying.

``GET /o/{token}.gif`` always answers the 1×1 GIF, whatever the token: a mail client shows no broken image,
and a prober learns nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar
from xml.sax.saxutils import escape

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.api.http import dump, path_id, read_form
from dispatcher.api.keys import SESSIONS, SETTINGS
from dispatcher.api.registry import Registry
from dispatcher.api.schemas_inbound import HookTally
from dispatcher.channels.twilio_http import SIGNATURE_HEADER
from dispatcher.core.inbound import EMAIL_SIGNATURE_HEADER, inbound_url, status_callback_url
from dispatcher.core.opens import PIXEL_GIF, open_pixel_url
from dispatcher.ops import email_events, inbound, opens
from dispatcher.ops.email_events import EmailTally

__all__ = ["inbound_url", "open_pixel_url", "register", "status_callback_url"]

T = TypeVar("T")
_TAGS = ("webhooks",)
_NO_STORE = {"Cache-Control": "no-store, private", "X-Robots-Tag": "noindex"}


def _public_url(request: web.Request) -> str:
    return request.app[SETTINGS].public_base_url.rstrip("/") + request.raw_path


async def _form(request: web.Request) -> list[tuple[str, str]]:
    data = await read_form(request)
    return [(key, value) for key, value in data.items() if isinstance(value, str)]


async def _in_transaction(request: web.Request, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async with request.app[SESSIONS].begin() as session:
        return await work(session)


async def twilio_status(request: web.Request) -> web.Response:
    provider_id = path_id(request, "provider_id")
    form = await _form(request)
    signature = request.headers.get(SIGNATURE_HEADER)
    await _in_transaction(
        request,
        lambda s: inbound.sms_status(
            s, provider_id, form, signature, _public_url(request), now=datetime.now(UTC)
        ),
    )
    return web.Response(status=204)


def twiml(text: str | None) -> str:
    body = "<Response/>" if text is None else f"<Response><Message>{escape(text)}</Message></Response>"
    return '<?xml version="1.0" encoding="UTF-8"?>' + body


async def twilio_inbound(request: web.Request) -> web.Response:
    provider_id = path_id(request, "provider_id")
    form = await _form(request)
    signature = request.headers.get(SIGNATURE_HEADER)
    answer = await _in_transaction(
        request,
        lambda s: inbound.sms_inbound(
            s, provider_id, form, signature, _public_url(request), now=datetime.now(UTC)
        ),
    )
    return web.Response(text=twiml(answer.reply_text), content_type="text/xml")


def _tally(tally: EmailTally) -> web.Response:
    return dump(
        HookTally(
            received=tally.received,
            applied=tally.applied,
            unknown=tally.unknown,
            suppressed=len(tally.suppressed),
        )
    )


async def email_webhook(request: web.Request) -> web.Response:
    provider_id = path_id(request, "provider_id")
    body = await request.read()
    signature = request.headers.get(EMAIL_SIGNATURE_HEADER)
    tally = await _in_transaction(
        request,
        lambda s: email_events.email_events(s, provider_id, body, signature, now=datetime.now(UTC)),
    )
    return _tally(tally)


async def email_dsn(request: web.Request) -> web.Response:
    provider_id = path_id(request, "provider_id")
    raw = await request.read()
    signature = request.headers.get(EMAIL_SIGNATURE_HEADER)
    tally = await _in_transaction(
        request, lambda s: email_events.email_dsn(s, provider_id, raw, signature, now=datetime.now(UTC))
    )
    return _tally(tally)


async def open_pixel(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    if len(token) <= 64:
        await _in_transaction(
            request,
            lambda s: opens.record_open(
                s,
                request.app[SETTINGS].secret_key,
                token,
                request.headers.get("User-Agent"),
                now=datetime.now(UTC),
            ),
        )
    return web.Response(body=PIXEL_GIF, content_type="image/gif", headers=_NO_STORE)


def register(api: Registry) -> None:
    form = ("application/x-www-form-urlencoded",)
    api.route(
        "POST",
        "/hooks/twilio/{provider_id}/status",
        summary="Twilio-style delivery receipt (X-Twilio-Signature); repeats and late ones change nothing",
        scope=None,
        status=204,
        raw_body=form,
        errors=(403, 404),
        tags=_TAGS,
    )(twilio_status)
    api.route(
        "POST",
        "/hooks/twilio/{provider_id}/inbound",
        summary="Incoming SMS: STOP/START/HELP keywords or a reply; answers TwiML with at most one text",
        scope=None,
        raw_body=form,
        raw_response="text/xml",
        errors=(403, 404),
        tags=_TAGS,
    )(twilio_inbound)
    api.route(
        "POST",
        "/hooks/email/{provider_id}/events",
        summary="E-mail events (bounce, complaint, delivered, deferred) as JSON, HMAC-signed",
        scope=None,
        raw_body=("application/json",),
        response=HookTally,
        errors=(403, 404),
        tags=_TAGS,
    )(email_webhook)
    api.route(
        "POST",
        "/hooks/email/{provider_id}/dsn",
        summary="A raw RFC 3464 bounce message (message/rfc822), HMAC-signed",
        scope=None,
        raw_body=("message/rfc822",),
        response=HookTally,
        errors=(403, 404),
        tags=_TAGS,
    )(email_dsn)
    api.route(
        "GET",
        "/o/{token}.gif",
        summary="Open pixel: always a 1x1 GIF; records one open per message (machine opens flagged)",
        scope=None,
        raw_response="image/gif",
        tags=_TAGS,
    )(open_pixel)
