"""Twilio-compatible REST SMS client, and the X-Twilio-Signature scheme for status callbacks and replies.

Twilio's SDK hard-wires its hosts, so this talks to the API directly with one injected aiohttp session and
a configurable base URL: Twilio itself, a compatible provider, or the local stand-in (``fake_sms``).

A message is ``POST {base}/2010-04-01/Accounts/{sid}/Messages.json`` with form fields ``To``, ``From``,
``Body`` and ``StatusCallback``, HTTP basic auth, and the attempt's idempotency key in a header. Whether the
provider deduplicates on that header is the operator's knowledge, not ours: ``supports_idempotency`` is
a constructor argument and defaults to False (the local stand-in does deduplicate).

Only failures to *connect* are known not to have reached the provider. Every later failure (read timeout,
reset, a 2xx body we cannot read) may hide an accepted message and is reported ``possible_duplicate``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from dispatcher.channels.base import OutboundSms, SendOutcome, SmsChannel

__all__ = [
    "API_VERSION",
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "TwilioHttpChannel",
    "basic_auth_header",
    "classify_response",
    "form_value",
    "messages_path",
    "parse_retry_after",
    "reason_for_error_code",
    "sign",
    "verify_signature",
]

API_VERSION: Final = "2010-04-01"
IDEMPOTENCY_HEADER: Final = "I-Twilio-Idempotency-Token"
SIGNATURE_HEADER: Final = "X-Twilio-Signature"

#: Twilio error codes that say why a message can never go (creation errors 21xxx, delivery errors 30xxx).
_REASONS: Final[Mapping[int, str]] = {
    21211: "invalid_number",
    21610: "unsubscribed",
    21614: "not_mobile",
    21612: "unreachable",
    21408: "region_not_enabled",
    30003: "unreachable",
    30004: "unsubscribed",
    30005: "invalid_number",
    30006: "not_mobile",
    30007: "filtered",
}
# Our own account or URL is wrong: no fault of the message, so retrying (after a fix) must stay possible.
_CONFIG_STATUSES: Final = frozenset({401, 403, 404})
_RETRY_STATUSES: Final = frozenset({408, 425, 429})

Params = Mapping[str, str] | Iterable[tuple[str, str]]


def messages_path(account_sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{quote(account_sid, safe='')}/Messages.json"


def reason_for_error_code(code: object) -> str:
    """Machine reason for a Twilio error code (int or numeric string); ``rejected`` when unknown."""
    try:
        return _REASONS.get(int(str(code)), "rejected")
    except ValueError:
        return "rejected"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None when absent or bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)  # every answer of every send: a third of json.loads' time
    except orjson.JSONDecodeError:
        try:
            data = json.loads(raw)  # what orjson refuses and json reads (NaN, UTF-16): read as before
        except (ValueError, UnicodeDecodeError):
            return {}
    return data if isinstance(data, dict) else {}


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _accepted(message_id: int, status: int, payload: dict[str, Any]) -> SendOutcome:
    sid = payload.get("sid")
    if not isinstance(sid, str) or not sid:
        return SendOutcome(
            message_id,
            "transient",
            error_detail=f"HTTP {status} without a message sid",
            possible_duplicate=True,
            reason="bad_response",
        )
    return SendOutcome(
        message_id, "sent", provider_message_id=sid, segments=_int_or_none(payload.get("num_segments"))
    )


def classify_response(message_id: int, status: int, retry_after: str | None, raw: bytes) -> SendOutcome:
    """Classify one HTTP answer from the Messages endpoint."""
    payload = _json_object(raw)
    if 200 <= status < 300:
        return _accepted(message_id, status, payload)
    code = payload.get("code")
    error_code = None if code is None else str(code)
    detail = str(payload.get("message") or f"HTTP {status}")
    if status in _RETRY_STATUSES or status >= 500:
        reason = "throttled" if status == 429 else "timeout" if status == 408 else "server_error"
        return SendOutcome(
            message_id,
            "transient",
            error_code=error_code,
            error_detail=detail,
            retry_after=parse_retry_after(retry_after),
            reason=reason,
        )
    if status in _CONFIG_STATUSES:
        return SendOutcome(
            message_id, "transient", error_code=error_code, error_detail=detail, reason="provider_config"
        )
    return SendOutcome(
        message_id,
        "permanent",
        error_code=error_code,
        error_detail=detail,
        reason=reason_for_error_code(code),
    )


_UNRESERVED: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_FORM_BYTES: Final = tuple(
    chr(b) if b in _UNRESERVED else "+" if b == 0x20 else f"%{b:02X}" for b in range(256)
)


def form_value(text: str) -> str:
    """``urllib.parse.quote_plus(text)``, byte for byte, at about twice its speed (one per message field)."""
    table = _FORM_BYTES
    return "".join([table[b] for b in text.encode()])


def sign(auth_token: str, url: str, params: Params = ()) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(token, url + key1 + value1 + key2 + value2...)), keys sorted.

    ``url`` is the full URL the request was sent to, query string included. Repeated keys contribute each
    distinct value in sorted order, as Twilio's own validators do.
    """
    pairs = params.items() if isinstance(params, Mapping) else params
    payload = url + "".join(key + value for key, value in sorted(set(pairs)))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(auth_token: str, url: str, params: Params, signature: str | None) -> bool:
    """True when ``signature`` is the X-Twilio-Signature of this URL and form; constant-time comparison."""
    if not signature or not auth_token:
        return False
    return hmac.compare_digest(sign(auth_token, url, params).encode(), signature.encode())


def basic_auth_header(account_sid: str, auth_token: str) -> str:
    return "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode("ascii")


class TwilioHttpChannel:
    """Sends batches concurrently (at most ``concurrency`` requests in flight per channel)."""

    name = "twilio-http"

    def __init__(
        self,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        session: aiohttp.ClientSession,
        concurrency: int = 50,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        supports_idempotency: bool = False,
        idempotency_header: str = IDEMPOTENCY_HEADER,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.supports_idempotency = supports_idempotency
        self._session = session
        self._url = URL(base_url.rstrip("/") + messages_path(account_sid))
        self._headers = {
            "Authorization": basic_auth_header(account_sid, auth_token),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        self._idempotency_header = idempotency_header
        # connect also bounds the wait for a pooled connection: a timeout there means nothing was sent
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(connect_timeout, timeout))
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)

    async def send_batch(self, messages: Sequence[OutboundSms]) -> list[SendOutcome]:
        # A few pullers share the batch (cheaper than a task per message); the semaphore still bounds
        # requests across batches sent at the same time on this channel.
        outcomes: list[SendOutcome | None] = [None] * len(messages)
        pending = iter(range(len(messages)))
        encoded: dict[str, str] = {}  # sender and callback URL: the same for most of a batch

        async def work() -> None:
            # One slot per puller, held while it drains the batch, not one per message: the bound on requests
            # in flight holds across batches all the same, at a fiftieth of the semaphore traffic.
            async with self._slots:
                for index in pending:
                    message = messages[index]
                    headers = self._headers_for(message.idempotency_key)
                    outcomes[index] = await self._post(message.message_id, _form(message, encoded), headers)

        await asyncio.gather(*(work() for _ in range(min(self._concurrency, len(messages)))))
        return [outcome for outcome in outcomes if outcome is not None]

    async def send_one(self, message: OutboundSms) -> SendOutcome:
        return await self._send(message.message_id, _form(message, {}), message.idempotency_key)

    async def _send(self, message_id: int, body: bytes, key: str) -> SendOutcome:
        async with self._slots:
            return await self._post(message_id, body, self._headers_for(key))

    def _headers_for(self, key: str) -> dict[str, str]:
        headers = self._headers.copy()
        headers[self._idempotency_header] = key
        return headers

    async def _post(self, message_id: int, body: bytes, headers: dict[str, str]) -> SendOutcome:
        try:
            async with self._session.post(
                self._url, data=body, headers=headers, timeout=self._timeout
            ) as response:
                raw = await response.read()
                return classify_response(
                    message_id, response.status, response.headers.get("Retry-After"), raw
                )
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
            return SendOutcome(message_id, "transient", error_detail=_describe(exc), reason="connection")
        except TimeoutError as exc:
            return SendOutcome(
                message_id,
                "transient",
                error_detail=_describe(exc),
                possible_duplicate=True,
                reason="timeout",
            )
        except aiohttp.ClientError as exc:
            return SendOutcome(
                message_id,
                "transient",
                error_detail=_describe(exc),
                possible_duplicate=True,
                reason="connection",
            )

    async def close(self) -> None:
        """Nothing to release: the session belongs to whoever injected it."""


def _form(message: OutboundSms, encoded: dict[str, str]) -> bytes:
    """The form body, fields in the order ``urlencode`` of ``To, From, Body[, StatusCallback]`` gives."""
    sender = encoded.get(message.sender)
    if sender is None:
        sender = encoded[message.sender] = form_value(message.sender)
    text = f"To={form_value(message.to)}&From={sender}&Body={form_value(message.body)}"
    callback = message.status_callback
    if callback:
        value = encoded.get(callback)
        if value is None:
            value = encoded[callback] = form_value(callback)
        text += "&StatusCallback=" + value
    return text.encode()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


if TYPE_CHECKING:

    def _is_an_sms_channel(channel: TwilioHttpChannel) -> SmsChannel:
        return channel  # mypy proves the class satisfies the Protocol
