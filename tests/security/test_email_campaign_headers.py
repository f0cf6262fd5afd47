"""Header injection end to end: an e-mail campaign through the API, a real worker and the SMTP sink.

Contacts whose names carry CRLF or encoded-word payloads are imported over HTTP; the subject template
prints the name. The campaign runs on a real arq worker into the aiosmtpd sink. Every message that
arrived is parsed with :mod:`email.parser`: it has exactly the headers we write, one recipient, and the
subject as literal text. A recipient whose subject cannot be written safely gets nothing at all (the ledger
row fails) instead of a forged header.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from dispatcher.api.keys import SESSIONS, SETTINGS
from dispatcher.channels.fake_smtp import FakeSmtpConfig, start_fake_smtp
from dispatcher.pipeline.queue import connect_queue
from dispatcher.settings import Settings
from dispatcher.storage.campaigns import Message
from tests.api.makers_core import make_list
from tests.api.makers_lists import import_csv
from tests.conftest import KeyMaker, bearer
from tests.helpers import drain

SAFE = {
    "safe1@example.org": "Bcc: evil@x.example",
    "safe2@example.org": "=?utf-8?q?Hello?=",
    "safe3@example.org": "Ünïcødé %0D%0A",
    "safe4@example.org": "Ann",
}
HOSTILE = {
    "evil1@example.org": "x\r\nBcc: evil@x.example",
    "evil2@example.org": "x\nX-Injected: 1",
    "evil3@example.org": "=?utf-8?q?x=0D=0ABcc:_evil@x.example?=",
    "evil4@example.org": "=?utf-8?b?eA0KQmNjOiBldmlsQHguZXhhbXBsZQ==?=",
}
HEADERS = Counter(
    ["Date", "From", "Reply-To", "To", "Subject", "Message-ID", "MIME-Version", "List-Unsubscribe",
     "List-Unsubscribe-Post", "Content-Type"]
)  # fmt: skip


def _audience() -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["email", "first_name"])
    writer.writerows({**SAFE, **HOSTILE}.items())
    return buffer.getvalue()


async def _create(client: TestClient, key: str, path: str, body: dict[str, Any]) -> int:
    response = await client.post(path, json=body, headers=bearer(key))
    assert response.status == 201, await response.text()
    return int((await response.json())["id"])


async def _tick_and_drain(settings: Settings, rounds: int = 3) -> None:
    pool = await connect_queue(settings.redis_url or "")
    for _ in range(rounds):
        await pool.enqueue_job("dispatch_tick", _queue_name=settings.queue_name)
        await drain(settings)
    await pool.aclose()


async def _states(client: TestClient, campaign_id: int) -> dict[str, str]:
    async with client.app[SESSIONS]() as session:
        rows = await session.execute(
            sa.select(Message.address, Message.state).where(Message.campaign_id == campaign_id)
        )
    return {str(address): str(state) for address, state in rows}


async def test_no_forged_header_reaches_the_sink(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    list_id = await make_list(client, key)
    job = await import_csv(client, key, list_id, _audience())
    async with start_fake_smtp(FakeSmtpConfig(seed=2)) as sink:
        provider = {
            "name": "sink", "channel": "email", "kind": "smtp",
            "config": {"host": sink.host, "port": sink.port, "tls": "none", "from": ["news@shop.example"],
                       "reply_to": "Help <help@shop.example>"},
        }  # fmt: skip
        template = {
            "name": "offer", "channel": "email", "subject": "{{ first_name }}, 20% off",
            "text": "Hi {{ first_name }}. Unsubscribe: {{ unsubscribe_url }}",
            "html": "<p>Hi {{ first_name }}</p><a href='{{ unsubscribe_url }}'>unsubscribe</a>",
        }  # fmt: skip
        campaign = {
            "name": "spring", "channel": "email", "list_id": list_id,
            "template_id": await _create(client, key, "/v1/templates", template),
            "provider_id": await _create(client, key, "/v1/providers", provider),
            "sender": "news@shop.example",
            "schedule": {"windows": "00:00-24:00", "allowed": "00:00-24:00"},
        }  # fmt: skip
        campaign_id = await _create(client, key, "/v1/campaigns", campaign)
        started = await client.post(f"/v1/campaigns/{campaign_id}/start", headers=bearer(key))
        assert started.status in {200, 202}, await started.text()
        await _tick_and_drain(client.app[SETTINGS])
        received = list(sink.store.messages)
    imported = {**SAFE, **HOSTILE}
    assert job["accepted"] == len(imported), job
    by_recipient: dict[str, EmailMessage] = {}
    for record in received:
        assert record.data is not None
        message = BytesParser(policy=policy.default).parsebytes(record.data)
        assert isinstance(message, EmailMessage)
        assert Counter(message.keys()) == HEADERS, message.keys()
        assert message.defects == []
        (recipient,) = record.rcpt_tos
        by_recipient[recipient] = message
    assert set(by_recipient) <= set(imported)
    for address, name in SAFE.items():
        assert by_recipient[address]["Subject"] == f"{name}, 20% off"
    states = await _states(client, campaign_id)
    for address in HOSTILE:
        if address in by_recipient:  # the importer may have cleaned the name: then it must read as clean
            subject = str(by_recipient[address]["Subject"])
            assert not set(subject) & {"\r", "\n"}
        else:
            assert states[address] == "failed", states


PROVIDER_HEADER_FIELDS = [
    ("reply_to", "Help <help@shop.example>\r\nBcc: evil@x.example"),
    ("reply_to", "=?utf-8?q?Help=0D=0ABcc:_evil@x.example?= <help@shop.example>"),
    ("mail_from", "bounces@shop.example\r\nRCPT TO:<evil@x.example>"),
    ("from", ["=?utf-8?q?x=0D=0A?=@shop.example"]),
    ("message_id_domain", "shop.example>\r\nBcc: evil@x.example"),
]


async def test_provider_header_fields_are_refused_when_saved(client: TestClient, make_key: KeyMaker) -> None:
    """Today the skeleton refuses them at send time, failing every message of the provider instead."""
    key = await make_key()
    for index, (field, value) in enumerate(PROVIDER_HEADER_FIELDS):
        config = {"host": "127.0.0.1", "port": 25, "tls": "none", "from": ["news@shop.example"], field: value}
        body = {"name": f"relay {index}", "channel": "email", "kind": "smtp", "config": config}
        response = await client.post("/v1/providers", json=body, headers=bearer(key))
        assert response.status == 422, (field, response.status)
        fields = [d.get("field") for d in (await response.json())["error"]["details"]]
        assert any(str(f).endswith(field) for f in fields), fields
