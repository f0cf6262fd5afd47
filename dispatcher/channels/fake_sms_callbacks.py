"""What the stand-in sends back: signed status callbacks and inbound replies, like Twilio does.

Each accepted message's fate (delivered or not, answered or not) is drawn when it is accepted; a fixed pool
of workers then posts its status callbacks in order (queued, sent, final) after ``callback_latency``, and
the reply, if any, to ``inbound_url``. Jobs are due in arrival order because the latency is constant, so a
FIFO queue serves them in due order. A failed post is counted, not retried.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import aiohttp

from dispatcher.channels.fake_sms_store import FakeSmsConfig, FakeSmsStore, Reply, SmsRecord
from dispatcher.channels.twilio_http import API_VERSION, SIGNATURE_HEADER, sign
from dispatcher.logs import get_logger

__all__ = ["CallbackSender"]

log = get_logger(__name__)

#: Twilio error codes carried by the final callback of a message that did not arrive.
_FAILURE_CODES = {"undelivered": "30003", "failed": "30001"}


@dataclass(frozen=True, slots=True)
class _Job:
    due: float
    record: SmsRecord
    final: str
    reply: str | None


class CallbackSender:
    def __init__(
        self, config: FakeSmsConfig, store: FakeSmsStore, rng: random.Random, session: aiohttp.ClientSession
    ) -> None:
        self._config = config
        self._store = store
        self._rng = rng
        self._session = session
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"fake-sms-callbacks-{n}")
            for n in range(self._config.callback_concurrency)
        ]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    def schedule(self, record: SmsRecord) -> None:
        """Draw the message's fate now; queue its callbacks and reply if anyone listens for them."""
        config = self._config
        delivered = self._rng.random() < config.delivery_rate
        final = "delivered" if delivered else config.failure_status
        reply = None
        if delivered and config.inbound_url and self._rng.random() < config.reply_rate:
            reply = self._rng.choice(config.reply_texts)
        if record.status_callback is None and reply is None:
            record.status = final
            return
        due = asyncio.get_running_loop().time() + config.callback_latency
        self._queue.put_nowait(_Job(due, record, final, reply))

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self._queue.get()
            delay = job.due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._run(job)

    async def _run(self, job: _Job) -> None:
        steps = ["queued", "sent"] if self._config.intermediate_callbacks else []
        if job.final == "failed" and steps:
            steps.pop()  # a failed message never left the provider
        for status in [*steps, job.final]:
            job.record.status = status
            if job.record.status_callback:
                await self._status_callback(job.record, status)
        if job.reply is not None and self._config.inbound_url:
            await self._reply(job.record, job.reply, self._config.inbound_url)

    async def _status_callback(self, record: SmsRecord, status: str) -> None:
        assert record.status_callback is not None
        form = {
            "AccountSid": self._config.account_sid,
            "ApiVersion": API_VERSION,
            "From": record.sender,
            "MessageSid": record.sid,
            "MessageStatus": status,
            "SmsSid": record.sid,
            "SmsStatus": status,
            "To": record.to,
        }
        if code := _FAILURE_CODES.get(status):
            form["ErrorCode"] = code
        ok = await self._post(record.status_callback, form)
        self._store.counters["callbacks_sent" if ok else "callbacks_failed"] += 1

    async def _reply(self, record: SmsRecord, text: str, url: str) -> None:
        sid = self._store.next_sid()
        form = {
            "AccountSid": self._config.account_sid,
            "ApiVersion": API_VERSION,
            "Body": text,
            "From": record.to,
            "MessageSid": sid,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": record.sender,
        }
        ok = await self._post(url, form)
        self._store.counters["replies_sent" if ok else "replies_failed"] += 1
        if ok:
            self._store.replies.append(Reply(sid, record.to, record.sender, text, record.sid))

    async def _post(self, url: str, form: dict[str, str]) -> bool:
        headers = {SIGNATURE_HEADER: sign(self._config.auth_token, url, form)}
        try:
            async with self._session.post(url, data=form, headers=headers) as response:
                await response.read()
                return response.status < 400
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("fake_sms_post_failed", url=url, error=type(exc).__name__)
            return False
