"""What an incoming SMS does, whichever channel brought it (Twilio webhook or SMPP deliver_sm).

STOP-family words suppress the number and earn one confirmation; START lifts a STOP suppression and records
consent; HELP gets the help text. The caller has already recorded the reply's event under its dedupe key in
the same transaction, so a reply delivered many times acts once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core.inbound import ReplyKind
from dispatcher.storage import suppressions
from dispatcher.storage.content import Provider

__all__ = ["DEFAULT_TEXTS", "act_on_reply", "reply_text"]

DEFAULT_TEXTS: Final = {
    "stop_reply": "You are unsubscribed and will get no more messages from us. Reply START to resubscribe.",
    "start_reply": "You are resubscribed. Reply STOP to unsubscribe.",
    "help_reply": "Marketing messages. Reply STOP to unsubscribe, START to resubscribe. "
    "Msg&data rates may apply.",
}


async def act_on_reply(
    session: AsyncSession, provider: Provider, kind: ReplyKind, sender: str, body: str, *, now: datetime
) -> str | None:
    """Apply the reply; the one text to send back, if any."""
    workspace_id = provider.workspace_id
    source = f"SMS reply {body.strip()[:40]!r} via provider {provider.id}"
    if kind == "optout":
        new = await suppressions.suppress_address(
            session,
            workspace_id=workspace_id,
            channel="sms",
            address=sender,
            reason="stop",
            source=source,
            now=now,
        )
        return reply_text(provider, "stop_reply") if new else None
    if kind == "optin":
        lifted = await suppressions.lift_suppression(
            session, workspace_id=workspace_id, channel="sms", address=sender, reason="stop"
        )
        if not lifted:
            return None
        await suppressions.add_consent(
            session,
            workspace_id=workspace_id,
            channel="sms",
            address=sender,
            granted=True,
            source=source,
            now=now,
        )
        return reply_text(provider, "start_reply")
    if kind == "help":
        return reply_text(provider, "help_reply")
    return None


def reply_text(provider: Provider, name: str) -> str:
    configured = provider.config.get(name)
    return configured if isinstance(configured, str) and configured.strip() else DEFAULT_TEXTS[name]
