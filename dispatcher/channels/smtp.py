"""E-mail over SMTP (aiosmtplib): a pool of reused connections per relay, replies classified at the edge.

One connection carries one transaction at a time, so a batch is spread over ``connections`` reused ones
(about 750 messages/s on one, 2,000 on ten to a local sink; a new connection per message manages 430). A
pooled connection that the relay closed while idle fails on MAIL, before anything was sent: it is replaced
and the message tried once more on the fresh one. Any other broken connection is dropped and replaced when
next needed. When connecting fails, the rest of that batch gets the same transient outcome at once instead
of each message waiting for its own timeout.

The channel stamps ``Date`` when the message has none (the engine's MIME skeleton is filled without a
clock) and signs with DKIM when configured, in that order, so ``Date`` is signed.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Final

import aiosmtplib

from dispatcher.channels.base import OutboundEmail, SendOutcome
from dispatcher.channels.smtp_config import SmtpConfig, smtp_config_from_dict
from dispatcher.channels.smtp_dkim import DkimAlgorithm, DkimSigner
from dispatcher.channels.smtp_outcomes import Phase, classify_reply, no_reply_outcome, queue_id
from dispatcher.errors import InputError

__all__ = ["SmtpChannel", "smtp_channel_from_config"]

_DATE_HEADER: Final = re.compile(rb"(?:^|\r\n)date:", re.IGNORECASE)
_QUIT_TIMEOUT: Final = 2.0
_ENVELOPE: Final = re.compile(r"[!#-'*+\-/-9=?A-Z^-~.]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


class _Slot:
    """One pooled connection, opened on first use and reopened after it broke."""

    __slots__ = ("client", "config", "used")

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.client: aiosmtplib.SMTP | None = None
        self.used = False  # carried a message since it was opened: an idle relay may have dropped it

    async def connect(self) -> aiosmtplib.SMTP:
        if self.client is not None and self.client.is_connected:
            return self.client
        self.drop()
        c = self.config
        client = aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            username=c.username,
            password=c.password,
            local_hostname=c.local_hostname,
            timeout=c.timeout,
            use_tls=c.tls == "tls",
            start_tls=c.tls == "starttls",
            validate_certs=c.tls_verify,
            cert_bundle=c.ca_file,
        )
        await client.connect()
        self.client, self.used = client, False
        return client

    def drop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None

    async def quit(self) -> None:
        client, self.client = self.client, None
        if client is None or not client.is_connected:
            return
        try:
            await client.quit(timeout=_QUIT_TIMEOUT)
        except (aiosmtplib.SMTPException, OSError):
            client.close()


class _Batch:
    """Outcomes of one ``send_batch`` call, filled by the pool's workers."""

    def __init__(self, messages: Sequence[OutboundEmail]) -> None:
        self.pending = iter(enumerate(messages))
        self.outcomes: list[SendOutcome | None] = [None] * len(messages)
        self.connect_failure: SendOutcome | None = None


class SmtpChannel:
    """An :class:`~dispatcher.channels.base.EmailChannel` for one SMTP relay."""

    def __init__(self, config: SmtpConfig, *, signer: DkimSigner | None = None) -> None:
        self.config = config
        self._signer = signer
        self._slots: asyncio.LifoQueue[_Slot] = asyncio.LifoQueue()
        self._all = [_Slot(config) for _ in range(config.connections)]
        for slot in self._all:
            self._slots.put_nowait(slot)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def supports_idempotency(self) -> bool:
        return False

    async def send_batch(self, messages: Sequence[OutboundEmail]) -> list[SendOutcome]:
        batch = _Batch(messages)
        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.config.connections, len(messages))):
                group.create_task(self._work(batch))
        outcomes = [outcome for outcome in batch.outcomes if outcome is not None]
        assert len(outcomes) == len(messages)  # every worker runs until the iterator is empty
        return outcomes

    async def _work(self, batch: _Batch) -> None:
        slot = await self._slots.get()
        try:
            for index, message in batch.pending:
                failure = batch.connect_failure
                if failure is not None:
                    batch.outcomes[index] = _copy_for(failure, message.message_id)
                    continue
                batch.outcomes[index] = await self._deliver(slot, message, batch)
        except asyncio.CancelledError:
            slot.drop()  # a transaction may be half done on it
            raise
        finally:
            self._slots.put_nowait(slot)

    async def _deliver(self, slot: _Slot, message: OutboundEmail, batch: _Batch) -> SendOutcome:
        try:
            data = self._prepare(message.data)
        except Exception as exc:
            return SendOutcome(
                message.message_id, "permanent", error_detail=f"dkim: {exc}"[:500], reason="rejected"
            )
        for attempt in (1, 2):
            reused = slot.client is not None and slot.client.is_connected and slot.used
            try:
                client = await slot.connect()
            except Exception as exc:
                batch.connect_failure = _connect_outcome(message.message_id, exc, self.config)
                return batch.connect_failure
            outcome, stale = await self._transaction(slot, client, message, data)
            if not (stale and reused and attempt == 1):
                return outcome
        return outcome

    async def _transaction(
        self, slot: _Slot, client: aiosmtplib.SMTP, message: OutboundEmail, data: bytes
    ) -> tuple[SendOutcome, bool]:
        """The outcome, and whether the connection turned out dead before anything was sent."""
        phase: Phase = "mail"
        slot.used = True
        try:
            await client.mail(_envelope_address(message.mail_from) if message.mail_from else "")
            phase = "rcpt"
            await client.rcpt(_envelope_address(message.to))
            phase = "data"
            reply = await client.data(data)
        except aiosmtplib.SMTPResponseException as exc:
            await self._after_refusal(slot, client, exc.code, phase)
            outcome = classify_reply(
                message.message_id,
                exc.code,
                exc.message,
                phase,
                throttle_retry_after=self.config.throttle_retry_after,
            )
            return outcome, False
        except (aiosmtplib.SMTPException, OSError, RuntimeError) as exc:  # RuntimeError: transport closing
            slot.drop()
            timed_out = isinstance(exc, TimeoutError)
            return no_reply_outcome(message.message_id, phase, exc, timed_out=timed_out), phase == "mail"
        except ValueError as exc:  # control characters (a broken address) or non-ASCII (needs SMTPUTF8)
            await self._after_refusal(slot, client, 0, phase)
            detail = f"envelope address not writable: {exc}"[:500]
            # without SMTPUTF8 we cannot write the address; that says nothing against the recipient
            reason = "rejected" if isinstance(exc, UnicodeError) else "invalid_address"
            return SendOutcome(message.message_id, "permanent", error_detail=detail, reason=reason), False
        return SendOutcome(message.message_id, "sent", provider_message_id=queue_id(reply.message)), False

    async def _after_refusal(self, slot: _Slot, client: aiosmtplib.SMTP, code: int, phase: Phase) -> None:
        """Leave the connection ready for the next transaction, or drop it."""
        if code == 421 or phase == "data":
            if code == 421:
                slot.drop()  # 421: the relay closes the connection after saying so
            return
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError):
            slot.drop()

    def _prepare(self, data: bytes) -> bytes:
        head_end = data.find(b"\r\n\r\n")
        head = data if head_end < 0 else data[:head_end]
        if _DATE_HEADER.search(head) is None:
            stamp = format_datetime(datetime.now(UTC).replace(microsecond=0))
            data = b"Date: " + stamp.encode("ascii") + b"\r\n" + data
        return data if self._signer is None else self._signer.sign(data)

    async def close(self) -> None:
        await asyncio.gather(*(slot.quit() for slot in self._all))


def _envelope_address(address: str) -> str:
    """The address as written in MAIL/RCPT, domain in its ASCII (IDNA) form.

    aiosmtplib parses what it is given and quietly keeps a part (``a@b>, c@d`` goes to ``a@b``): anything
    but a bare address raises ValueError here, a non-ASCII local part UnicodeError (it needs SMTPUTF8).
    """
    local, at, domain = address.rpartition("@")
    if at and not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    if not local.isascii():
        raise UnicodeError(f"non-ASCII local part in {address!r}")
    written = f"{local}{at}{domain}"
    if _ENVELOPE.fullmatch(written) is None:
        raise ValueError(f"not a bare e-mail address: {address!r}")
    return written


def _copy_for(outcome: SendOutcome, message_id: int) -> SendOutcome:
    return SendOutcome(
        message_id,
        outcome.status,
        error_code=outcome.error_code,
        error_detail=outcome.error_detail,
        retry_after=outcome.retry_after,
        reason=outcome.reason,
    )


def _connect_outcome(message_id: int, error: Exception, config: SmtpConfig) -> SendOutcome:
    retry = config.throttle_retry_after
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        detail = f"authentication refused: {error.code} {error.message}"[:500]
        return SendOutcome(
            message_id, "transient", error_code=str(error.code), error_detail=detail, reason="provider_config"
        )
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return classify_reply(message_id, error.code, error.message, "connect", throttle_retry_after=retry)
    detail = f"{type(error).__name__}: {error}"[:500]
    if isinstance(error, aiosmtplib.SMTPNotSupported | ValueError) or _is_tls_failure(error):
        return SendOutcome(message_id, "transient", error_detail=detail, reason="provider_config")
    reason = "timeout" if isinstance(error, TimeoutError) else "connection"
    return SendOutcome(message_id, "transient", error_detail=detail, reason=reason)


def _is_tls_failure(error: Exception) -> bool:
    return isinstance(error, ssl.SSLError) or isinstance(error.__cause__, ssl.SSLError)


def smtp_channel_from_config(config: Mapping[str, Any]) -> SmtpChannel:
    """The channel for a provider of kind ``smtp``; InputError names every bad setting."""
    settings = smtp_config_from_dict(config)
    signer = None
    if settings.dkim:
        assert settings.dkim_selector is not None
        assert settings.dkim_domain is not None
        assert settings.dkim_private_key is not None
        algorithm: DkimAlgorithm
        if settings.dkim_algorithm == "ed25519-sha256":
            algorithm = "ed25519-sha256"
        elif settings.dkim_algorithm == "rsa-sha256":
            algorithm = "rsa-sha256"
        else:
            raise InputError("invalid SMTP config: dkim_algorithm must be rsa-sha256 or ed25519-sha256")
        signer = DkimSigner(
            selector=settings.dkim_selector,
            domain=settings.dkim_domain,
            private_key=settings.dkim_private_key,
            algorithm=algorithm,
        )
    return SmtpChannel(settings, signer=signer)
