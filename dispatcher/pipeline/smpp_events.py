"""What an SMPP bind hears back: delivery receipts and incoming SMS, written to the ledger like webhooks.

The SMSC pushes both over the same bind the worker sends on, so the handlers live with the channel in
the worker. Each event is one short transaction. A receipt is applied by provider message id (idempotent:
the ledger never moves backwards, an outcome counts once). An incoming SMS has no id of its own in SMPP,
and an SMSC that missed our deliver_sm_resp delivers it again, so its dedupe key is the sender, the text
and the UTC minute: a repeat within the minute acts once, a STOP sent again tomorrow is a new event
(and suppresses nothing new).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatcher.channels.base import OutboundSms, SmsChannel
from dispatcher.core.inbound import classify_reply, is_final
from dispatcher.core.smpp_receipts import Receipt
from dispatcher.logs import get_logger
from dispatcher.pipeline.replies import act_on_reply
from dispatcher.storage import events as store
from dispatcher.storage.content import Provider

__all__ = ["SmppEvents"]

log = get_logger(__name__)
_MAX_TEXT = 1600


class SmppEvents:
    """Receipt and inbound handlers for one SMPP provider; ``channel`` is set once it is built."""

    def __init__(
        self,
        provider: Provider,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._provider = provider
        self._sessions = sessions
        self._clock = clock
        self.channel: SmsChannel | None = None
        self._answers: set[asyncio.Task[None]] = set()

    async def on_receipt(self, receipt: Receipt) -> None:
        if not is_final(receipt.status):
            return
        async with self._sessions.begin() as session:
            await store.apply_receipt(
                session,
                provider_id=self._provider.id,
                provider_message_id=receipt.provider_message_id[:100],
                status=receipt.status,
                error_code=receipt.error_code,
                occurred_at=receipt.done_at or self._clock(),
            )

    async def on_inbound(self, sender: str, recipient: str, text: str) -> None:
        now = self._clock()
        sender = f"+{sender}" if sender.isdigit() else sender  # SMPP carries international numbers bare
        kind = classify_reply(text)
        digest = hashlib.sha256(f"{sender}|{recipient}|{text}|{now:%Y%m%d%H%M}".encode()).hexdigest()[:32]
        async with self._sessions.begin() as session:
            workspace_id = self._provider.workspace_id
            message = await store.latest_message_to(session, workspace_id, "sms", sender)
            first = await store.record_event(
                session,
                workspace_id=workspace_id,
                kind=kind,
                dedupe_key=f"inbound:{self._provider.id}:smpp:{digest}",
                occurred_at=now,
                message=message,
                payload={"from": sender, "to": recipient, "text": text[:_MAX_TEXT]},
            )
            answer = None
            if first:
                answer = await act_on_reply(session, self._provider, kind, sender, text, now=now)
        if answer is not None:
            # the bind's reader is waiting on this handler before it acknowledges the deliver_sm, so the
            # confirmation's submit_sm_resp could never be read from here: send it from its own task
            task = asyncio.create_task(self._answer(sender, recipient, answer, digest))
            self._answers.add(task)
            task.add_done_callback(self._answers.discard)

    async def _answer(self, to: str, sender: str, text: str, digest: str) -> None:
        """The confirmation goes back over the same bind; it is not a campaign message (id 0). Lost if the
        worker dies first: the suppression itself is already committed."""
        if self.channel is None:
            return
        reply = OutboundSms(message_id=0, to=to, sender=sender, body=text, idempotency_key=f"reply-{digest}")
        outcomes = await self.channel.send_batch([reply])
        if outcomes and outcomes[0].status != "sent":
            log.warning("smpp reply not sent", extra={"provider_id": self._provider.id})
