"""No phone number or e-mail address reaches the logs, across an import and a small SMS campaign.

Everything runs in this process with logging at DEBUG: the API (over a real socket, so the stand-in's
delivery receipts and STOP replies come back through the webhooks), a real arq worker (imports, sends,
receipts, replies), and the SMS stand-in with failures injected. Structured logs (structlog, rendered as
JSON the way production writes them) and every standard-library record (aiohttp, arq, SQLAlchemy, …) are
captured, then searched for each contact's number (with and without ``+``, and its national digits) and
e-mail address, valid or rejected.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
import structlog
from aiohttp.test_utils import TestClient

from dispatcher.api.app import create_app
from dispatcher.channels.fake_sms import start_fake_sms
from dispatcher.channels.fake_sms_store import FakeSmsConfig
from dispatcher.core.inbound import inbound_url
from dispatcher.logs import configure_logging, mask_pii
from dispatcher.settings import Settings
from dispatcher.storage.campaigns import Campaign
from dispatcher.storage.content import Provider
from dispatcher.storage.engine import create_engine
from tests.api.makers_core import make_list
from tests.api.makers_lists import import_csv
from tests.conftest import KeyMaker, bearer
from tests.pipeline.campaign_setup import phone, run_rounds, seed_campaign

RECIPIENTS = 12
IMPORT_ROWS = [
    ("+14155550123", "ann.lee@example.com", "Ann"),
    ("(415) 555-0187", "bob_kim@example.org", "Bob"),
    ("+33 6 12 34 56 78", "cy.moreau@example.fr", "Cy"),
    ("+1415555", "dee@@example.com", "Dee"),  # rejected: both invalid
    ("+442079460000", "not-an-address", "Eve"),  # kept for its number; the address dropped
    ("+14155550123", "ann.lee@example.com", "Ann"),  # a duplicate
]


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Structured logs as production renders them (JSON), into a buffer; stdlib records into caplog."""
    buffer = io.StringIO()
    configure_logging("DEBUG", json=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=buffer))
    caplog.set_level(logging.DEBUG)
    for name in ("alembic", "aiohttp.access", "arq.jobs"):  # configure_logging quietens these
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        structlog.reset_defaults()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _needles() -> list[str]:
    """Every way a contact of this test could show up in a log line."""
    found: list[str] = []
    for number, address, _ in IMPORT_ROWS:
        digits = "".join(c for c in number if c.isdigit())
        found += [number, digits, digits[-10:], address]
    for n in range(RECIPIENTS):
        found += [phone(n), phone(n)[1:], phone(n)[-10:]]
    return sorted({needle for needle in found if len(needle) >= 7})


async def _point_provider_at(settings: Settings, campaign_id: int, url: str) -> int:
    engine = create_engine(settings.database_url)
    async with engine.begin() as conn:
        provider_id = int(
            await conn.scalar(sa.select(Campaign.provider_id).where(Campaign.id == campaign_id)) or 0
        )
        config = dict(await conn.scalar(sa.select(Provider.config).where(Provider.id == provider_id)) or {})
        await conn.execute(
            sa.update(Provider).where(Provider.id == provider_id).values(config={**config, "base_url": url})
        )
    await engine.dispose()
    return provider_id


async def _settle(stub_url: str, sent: int) -> dict[str, Any]:
    """Wait until the stand-in has made every callback and reply it is going to make."""
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            async with http.get(f"{stub_url}/_stub/stats") as response:
                stats: dict[str, Any] = await response.json()
            callbacks = stats.get("callbacks_sent", 0) + stats.get("callbacks_failed", 0)
            if stats.get("messages", 0) >= sent and callbacks >= 3 * sent:
                await asyncio.sleep(0.3)  # the last replies are in flight a little longer
                return stats
            await asyncio.sleep(0.05)
    pytest.fail("the stand-in did not settle")


async def test_no_number_or_address_in_any_log(
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    settings: Settings,
    make_key: KeyMaker,
    captured: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    live = settings.with_overrides(public_base_url=base, log_level="DEBUG")
    client = await aiohttp_client(create_app(live), server_kwargs={"port": port})
    key = await make_key()

    list_id = await make_list(client, key)
    text = "phone,email,first_name\n" + "".join(f'"{p}","{e}",{n}\n' for p, e, n in IMPORT_ROWS)
    job = await import_csv(client, key, list_id, text)
    assert (job["accepted"], job["rejected"], job["duplicate"]) == (4, 1, 1), job
    rejects = await client.get(f"/v1/imports/{job['id']}/rejects", headers=bearer(key))
    assert "dee@@example.com" in await rejects.text()  # the data is there; the logs must not be

    stub_port = _free_port()
    stub_url = f"http://127.0.0.1:{stub_port}"
    campaign_id = await seed_campaign(live, stub_url, RECIPIENTS)
    provider_id = await _point_provider_at(live, campaign_id, stub_url)
    stand_in = FakeSmsConfig(
        seed=3,
        delivery_rate=0.6,
        rate_500=0.2,
        reply_rate=1.0,
        reply_texts=("STOP", "HELP", "who is this? call me on +14155550123"),
        inbound_url=inbound_url(base, provider_id),
    )
    runner, _ = await start_fake_sms(stand_in, port=stub_port)
    try:
        await run_rounds(live, campaign_id, timeout=30)
        stats = await _settle(stub_url, RECIPIENTS)
        await run_rounds(live, campaign_id, timeout=10)  # STOP confirmations go out through the worker
    finally:
        await runner.cleanup()
    assert stats["messages"] >= RECIPIENTS
    assert stats.get("replies_sent", 0) > 0, stats

    structured = captured.getvalue()
    stdlib = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    for sign in ("import.completed", "campaign.completed"):  # what ran is in what was captured
        assert sign in structured, structured
    hooks = f"/hooks/twilio/{provider_id}"
    for sign in ("send_chunk", f"{hooks}/status", f"{hooks}/inbound", "/rejects"):
        assert sign in stdlib, sign
    leaks = [needle for needle in _needles() if needle in structured or needle in stdlib]
    assert not leaks, leaks


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("bounce from user@bücher.de", "user@"),
        ("jörg.müller@example.de failed", "jörg"),
        ("ivan@xn--e1afmkfd.xn--p1ai", "ivan"),
        ("иван@пример.рф", "иван"),
        ("GET /v1/suppressions?address=ann%40example.com", "ann%40"),
        ("o'brien@example.com", "brien"),
    ],
)
def test_addresses_in_any_script_or_encoding_are_masked(text: str, hidden: str) -> None:
    assert hidden not in mask_pii(text)


def test_standard_library_records_and_tracebacks_are_masked(captured: io.StringIO) -> None:
    """arq logs a failed job's exception with its traceback; SQLAlchemy errors quote their parameters."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        configure_logging("DEBUG", json=True)
        logging.getLogger("arq.worker").info("job for %s done", "+14155550123")
        try:
            raise ValueError("duplicate key (phone)=(+14155550123) email ann.lee@example.com")
        except ValueError:
            logging.getLogger("arq.worker").exception("send_chunk failed")
        logging.getLogger("x").warning("bad %s %s", "only one")  # malformed arguments are no way around it
    finally:
        root.removeHandler(handler)
    written = stream.getvalue()
    assert "send_chunk failed" in written
    assert "Traceback" in written
    assert "ValueError: duplicate key" in written
    for needle in ("4155550123", "ann.lee@"):
        assert needle not in written, written
