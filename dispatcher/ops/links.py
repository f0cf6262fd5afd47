"""Tracked links and unsubscribe links: what the sender puts in messages, and what the public endpoints do.

The sender calls :func:`campaign_links` once when a campaign starts (URL → link code rows), then, per
recipient, :func:`message_url` for each link and :func:`unsubscribe_url` for e-mail. The public endpoints
call :func:`resolve_click` (the stored URL or None, never a URL taken from the request) and
:func:`unsubscribe_target` / :func:`unsubscribe` (GET shows, only POST changes state).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core.links import (
    is_link_code,
    is_trackable_url,
    link_code_from_bytes,
    read_recipient_token,
    read_unsubscribe_token,
    recipient_token,
    tracked_url,
    unsubscribe_token,
)
from dispatcher.errors import InputError
from dispatcher.storage import links as store
from dispatcher.storage.campaigns import Message


@dataclass(frozen=True, slots=True)
class UnsubscribeTarget:
    message: Message
    channel: str


def _new_code() -> str:
    return link_code_from_bytes(secrets.token_bytes(8))


async def campaign_links(
    session: AsyncSession, workspace_id: int, campaign_id: int | None, urls: Iterable[str], *, now: datetime
) -> dict[str, str]:
    """URL → link code for a campaign's links (existing rows reused). Only http(s) URLs are accepted."""
    wanted = list(urls)
    refused = [url for url in wanted if not is_trackable_url(url)]
    if refused:
        raise InputError("only absolute http(s) links can be tracked", details=[{"url": u} for u in refused])
    return await store.ensure_links(
        session, workspace_id=workspace_id, campaign_id=campaign_id, urls=wanted, new_code=_new_code, now=now
    )


def message_url(base_url: str, secret: str, link_code: str, message_id: int) -> str:
    """The tracked URL one recipient gets for one link: ``{base}/r/{code}/{recipient token}``."""
    return tracked_url(base_url, link_code, recipient_token(secret, link_code, message_id))


def unsubscribe_url(base_url: str, secret: str, workspace_id: int, channel: str, message_id: int) -> str:
    return f"{base_url.rstrip('/')}/u/{unsubscribe_token(secret, workspace_id, channel, message_id)}"


async def resolve_click(
    session: AsyncSession, secret: str, code: str, token: str | None, *, now: datetime
) -> str | None:
    """The stored URL for a tracked link (recording the recipient's click), or None: unknown or tampered."""
    if not is_link_code(code):
        return None
    message_id = None if token is None else read_recipient_token(secret, code, token)
    if token is not None and message_id is None:
        return None
    link = await store.link_by_code(session, code)
    if link is None or not is_trackable_url(link.url):
        return None
    if message_id is not None:
        message = await store.message_by_id(session, link.workspace_id, message_id)
        if message is None or (link.campaign_id is not None and message.campaign_id != link.campaign_id):
            return None
        await store.record_click(session, link=link, message=message, now=now)
    return link.url


async def unsubscribe_target(session: AsyncSession, secret: str, token: str) -> UnsubscribeTarget | None:
    """Who a token would unsubscribe, or None for a token we did not sign (or a message that is gone)."""
    ref = read_unsubscribe_token(secret, token)
    if ref is None:
        return None
    message = await store.message_by_id(session, ref.workspace_id, ref.subject_id)
    if message is None or message.channel != ref.channel:
        return None
    return UnsubscribeTarget(message, ref.channel)


async def unsubscribe(
    session: AsyncSession, secret: str, token: str, *, now: datetime
) -> UnsubscribeTarget | None:
    """Suppress the token's address on its channel (repeats are harmless); None for an invalid token."""
    target = await unsubscribe_target(session, secret, token)
    if target is not None:
        await store.unsubscribe_message(session, target.message, channel=target.channel, now=now)
    return target
