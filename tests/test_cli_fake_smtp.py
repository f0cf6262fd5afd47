"""``dispatcher fake-smtp`` as an operator starts it: a separate process, real SMTP and HTTP sockets."""

from __future__ import annotations

import json
import smtplib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sink() -> Iterator[tuple[int, int]]:
    smtp_port, http_port = _free_port(), _free_port()
    command = [sys.executable, "-m", "dispatcher", "fake-smtp", "--port", str(smtp_port)]
    process = subprocess.Popen([*command, "--http-port", str(http_port), "--rate-5xx", "0"])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", smtp_port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield smtp_port, http_port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _stats(http_port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/_stub/stats", timeout=5) as answer:
        body: dict[str, object] = json.loads(answer.read())
        return body


def test_the_sink_stores_mail_and_bounces_the_bounce_prefix(sink: tuple[int, int]) -> None:
    smtp_port, http_port = sink
    message = EmailMessage()
    message["From"], message["Subject"] = "shop@example.com", "Hello"
    message.set_content("hi")
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
        client.send_message(message, to_addrs=["ann@example.com"])
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.send_message(message, to_addrs=["bounce-1@example.com"])
    assert refused.value.recipients["bounce-1@example.com"][0] == 550
    stats = _stats(http_port)
    assert stats["messages"] == 1, stats
