"""Public tracking endpoints (no API key): click redirects and unsubscribe pages.

``GET /r/{code}[/{token}]`` redirects only to the URL stored for that code; an unknown code or a token
that fails its HMAC gets a 404 page, never a redirect, so the service is no open redirect.
``GET /u/{token}`` only shows a confirmation page (mail scanners fetch links); ``POST /u/{token}`` (the
page's button, or a mail client's RFC 8058 one-click ``List-Unsubscribe=One-Click``) suppresses the address.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime

from aiohttp import web

from dispatcher.api.keys import SESSIONS, SETTINGS
from dispatcher.api.registry import Registry
from dispatcher.logs import mask_pii
from dispatcher.ops import links as link_ops

_TAGS = ("tracking",)
# No caching (every click must reach us), no indexing, and the token never leaks through a Referer.
_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex", "Referrer-Policy": "no-referrer"}


def _page(title: str, body: str, *, status: int = 200) -> web.Response:
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>body{{font:16px system-ui,sans-serif;max-width:32rem;"
        "margin:3rem auto;padding:0 1rem;color:#222}button{font-size:1rem;padding:.6rem 1.2rem}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=text, status=status, content_type="text/html", headers=_HEADERS)


def _not_found() -> web.Response:
    return _page("Link not found", "<p>This link is unknown or has expired.</p>", status=404)


async def redirect(request: web.Request) -> web.StreamResponse:
    code = request.match_info["code"]
    token = request.match_info.get("token")
    secret = request.app[SETTINGS].secret_key
    async with request.app[SESSIONS].begin() as session:
        url = await link_ops.resolve_click(session, secret, code, token, now=datetime.now(UTC))
    if url is None:
        return _not_found()
    return web.Response(status=302, headers={**_HEADERS, "Location": url})


async def unsubscribe_page(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    async with request.app[SESSIONS]() as session:
        target = await link_ops.unsubscribe_target(session, request.app[SETTINGS].secret_key, token)
    if target is None:
        return _not_found()
    who = html.escape(mask_pii(target.message.address))
    channel = "e-mails" if target.channel == "email" else "text messages"
    form = (
        f"<p>Stop receiving marketing {channel} at <strong>{who}</strong>?</p>"
        f'<form method="post" action="/u/{html.escape(token)}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return _page("Unsubscribe", form)


async def unsubscribe(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    async with request.app[SESSIONS].begin() as session:
        target = await link_ops.unsubscribe(
            session, request.app[SETTINGS].secret_key, token, now=datetime.now(UTC)
        )
    if target is None:
        return _not_found()
    channel = "e-mails" if target.channel == "email" else "text messages"
    return _page("You are unsubscribed", f"<p>You will receive no more marketing {channel} from us.</p>")


def register(api: Registry) -> None:
    for path in ("/r/{code}", "/r/{code}/{token}"):
        api.route(
            "GET",
            path,
            summary="Tracked link: 302 to the stored URL (404 page for unknown or tampered links)",
            scope=None,
            status=302,
            errors=(404,),
            error_type="text/html",
            raw_response="text/html",
            tags=_TAGS,
        )(redirect)
    api.route(
        "GET",
        "/u/{token}",
        summary="Unsubscribe confirmation page (changes nothing)",
        scope=None,
        errors=(404,),
        error_type="text/html",
        raw_response="text/html",
        tags=_TAGS,
    )(unsubscribe_page)
    api.route(
        "POST",
        "/u/{token}",
        summary="Unsubscribe (the page's button or RFC 8058 one-click List-Unsubscribe=One-Click)",
        scope=None,
        errors=(404,),
        error_type="text/html",
        raw_response="text/html",
        tags=_TAGS,
    )(unsubscribe)
