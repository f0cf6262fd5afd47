"""The SMTP sink's ceiling, and what the e-mail path costs on top of it.

The sink (``dispatcher.channels.fake_smtp``) runs in its own process. Printed, for N messages each:

- bare aiosmtplib over 10 reused connections (the figure issue 6's dispatch benchmark compares against);
- ``SmtpChannel`` over its pool of 10, batches of 1,000 (the channel layer on top of that);
- the MIME skeleton fill rate of ``core/mime`` (one CPU, no I/O) and, for comparison, a stdlib
  ``EmailMessage`` built per recipient;
- DKIM signing (rsa-sha256, 2048-bit, dkimpy) per second, when the openssl command can make a key.

Afterwards the sink's counters are checked: every message stored exactly once.

    .venv/bin/python bench/smtp_ceiling.py [-n 20000] [-c 10]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from multiprocessing.connection import Connection
from pathlib import Path

import aiosmtplib

from dispatcher.channels.base import OutboundEmail
from dispatcher.channels.fake_smtp import FakeSmtpConfig, start_fake_smtp
from dispatcher.channels.smtp import smtp_channel_from_config
from dispatcher.channels.smtp_dkim import DkimSigner
from dispatcher.core.mime import MimeSkeleton

SKELETON = MimeSkeleton(from_header="Shop <news@shop.example>", domain="shop.example")
TEXT = "Hello {name},\n\nOur winter sale starts today: 30% off everything.\nhttps://t.example/c/abc123\n"
HTML = "<html><body><p>Hello {name},</p><p>Winter sale: <b>30% off</b>.</p></body></html>"


def message(i: int, run: str) -> bytes:
    return SKELETON.fill(
        to=f"user{i}@example.org",
        subject="Winter sale: 30% off",
        text=TEXT.format(name=f"User {i}"),
        html=HTML.format(name=f"User {i}"),
        message_key=f"dsp-{run}-{i}",
        unsubscribe_url=f"https://t.example/u/{i}",
        date=datetime.now(UTC),
    )


def _serve(conn: Connection) -> None:
    """Sink process: sends its port, then answers each request on the pipe with its stats."""

    async def main() -> None:
        async with start_fake_smtp(FakeSmtpConfig(keep_data=False)) as sink:
            conn.send(sink.port)
            loop = asyncio.get_running_loop()
            while await loop.run_in_executor(None, conn.recv):
                conn.send(sink.store.stats())

    asyncio.run(main())


async def smtp_ceiling(host: str, port: int, n: int, connections: int = 10, run: str = "0") -> float:
    """Messages/s of a bare aiosmtplib client sending ``n`` messages over ``connections`` reused ones."""
    payloads = [message(i, run) for i in range(n)]  # built first: the ceiling measures SMTP only
    counter = iter(range(n))

    async def worker() -> None:
        async with aiosmtplib.SMTP(hostname=host, port=port, local_hostname="bench.localhost") as client:
            for i in counter:  # MAIL, RCPT, DATA: what the channel sends (sendmail adds SIZE, ~25% slower)
                await client.mail("bounces@shop.example")
                await client.rcpt(f"user{i}@example.org")
                await client.data(payloads[i])

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return n / (time.perf_counter() - started)


async def channel_rate(host: str, port: int, n: int, connections: int, run: str) -> float:
    smtp = smtp_channel_from_config({"host": host, "port": port, "tls": "none", "connections": connections})
    emails = [
        OutboundEmail(i, f"user{i}@example.org", "bounces@shop.example", message(i, run), f"dsp-{run}-{i}")
        for i in range(n)
    ]
    started = time.perf_counter()
    for start in range(0, n, 1_000):
        outcomes = await smtp.send_batch(emails[start : start + 1_000])
        assert all(o.status == "sent" for o in outcomes), {o.reason for o in outcomes}
    rate = n / (time.perf_counter() - started)
    await smtp.close()
    return rate


def fill_rate(n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        message(i, "fill")
    return n / (time.perf_counter() - started)


def stdlib_rate(n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        built = EmailMessage()
        built["From"], built["To"], built["Subject"] = "Shop <news@shop.example>", f"u{i}@example.org", "Sale"
        built.set_content(TEXT.format(name=i))
        built.add_alternative(HTML.format(name=i), subtype="html")
        built.as_bytes()
    return n / (time.perf_counter() - started)


def dkim_rate(n: int) -> float | None:
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    with tempfile.TemporaryDirectory() as directory:
        key = Path(directory) / "key.pem"
        subprocess.run([openssl, "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        signer = DkimSigner(selector="s", domain="shop.example", private_key=key.read_text())
    data = message(0, "dkim")
    started = time.perf_counter()
    for _ in range(n):
        signer.sign(data)
    return n / (time.perf_counter() - started)


async def main(n: int, connections: int) -> None:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(child,), daemon=True)
    process.start()
    port = parent.recv()
    try:
        # the ceiling before and after the channel: on a shared machine, load drifts within one run
        before = await smtp_ceiling("127.0.0.1", port, n, connections, run="1")
        through_channel = await channel_rate("127.0.0.1", port, n, connections, run="2")
        after = await smtp_ceiling("127.0.0.1", port, n, connections, run="3")
        bare = (before + after) / 2
        parent.send(True)
        stats = parent.recv()
    finally:
        parent.send(False)
        process.join(5)
    print(f"SMTP sink, {n:,} messages per run, {connections} reused connections")
    print(f"  bare aiosmtplib (ceiling): {before:,.0f} before, {after:,.0f} after the channel run")
    share = through_channel / bare
    print(f"  SmtpChannel, batches of 1,000: {through_channel:,.0f} messages/s ({share:.2f} of the ceiling)")
    print(f"  MIME skeleton fill: {fill_rate(min(n, 50_000)):,.0f} messages/s (one core)")
    print(f"  stdlib EmailMessage per recipient: {stdlib_rate(2_000):,.0f} messages/s (one core)")
    signing = dkim_rate(200)
    print(
        f"  DKIM rsa-sha256 2048 (dkimpy): {signing:,.0f} signatures/s" if signing else "  DKIM: no openssl"
    )
    print(f"  sink: {stats['messages']:,} stored, {stats['duplicate_message_ids']} Message-IDs twice")
    assert stats["messages"] == 3 * n
    assert stats["duplicate_message_ids"] == 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("-c", "--connections", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.connections))
