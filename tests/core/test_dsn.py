"""RFC 3464 bounce parsing with real-shaped samples from Postfix, Exim, Gmail and an old plain-text Exim."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.core.dsn import DsnReport, bounce_class, parse_dsn

POSTFIX = b"""Return-Path: <>
Received: by mx.shop.example (Postfix) id 4Xyz; Mon, 23 Nov 2026 10:00:02 +0000 (UTC)
Date: Mon, 23 Nov 2026 10:00:02 +0000 (UTC)
From: MAILER-DAEMON@mx.shop.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounces@shop.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4Xyz.1700733602/mx.shop.example"
Message-Id: <20261123100002.4Xyz@mx.shop.example>

This is a MIME-encapsulated message.

--4Xyz.1700733602/mx.shop.example
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.shop.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<nobody@example.net>: host mx.example.net[192.0.2.10] said: 550 5.1.1
    <nobody@example.net>: Recipient address rejected: User unknown in virtual
    mailbox table (in reply to RCPT TO command)

--4Xyz.1700733602/mx.shop.example
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.shop.example
X-Postfix-Queue-ID: 4Xyz
X-Postfix-Sender: rfc822; bounces@shop.example
Arrival-Date: Mon, 23 Nov 2026 10:00:01 +0000 (UTC)

Final-Recipient: rfc822; nobody@example.net
Original-Recipient: rfc822;nobody@example.net
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.net>: Recipient address
    rejected: User unknown in virtual mailbox table

--4Xyz.1700733602/mx.shop.example
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <bounces@shop.example>
From: Shop <news@shop.example>
To: nobody@example.net
Subject: 20% off today
Message-ID: <dsp-12-345@shop.example>
Date: Mon, 23 Nov 2026 10:00:00 +0000

--4Xyz.1700733602/mx.shop.example--
"""

EXIM = b"""Return-path: <>
Envelope-to: bounces@shop.example
From: Mail Delivery System <Mailer-Daemon@mail.shop.example>
To: bounces@shop.example
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1rABCD-0001XY-2Z@mail.shop.example>
X-Failed-Recipients: full@example.org
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary=1700733700-eximdsn-123

--1700733700-eximdsn-123
Content-type: text/plain; charset=us-ascii

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a temporary error. The following address(es) deferred:

  full@example.org
    host mx.example.org [198.51.100.7]
    SMTP error from remote mail server after RCPT TO:<full@example.org>:
    452 4.2.2 Mailbox full

--1700733700-eximdsn-123
Content-type: message/delivery-status

Reporting-MTA: dns; mail.shop.example

Action: delayed
Final-Recipient: rfc822;full@example.org
Status: 4.2.2
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full
Will-Retry-Until: Wed, 25 Nov 2026 10:01:40 +0000

--1700733700-eximdsn-123
Content-type: message/rfc822

Return-path: <bounces@shop.example>
Message-ID: <something-else@shop.example>
X-Dispatcher-Message: dsp-3-77
From: news@shop.example
To: full@example.org
Subject: Sale

Hello
--1700733700-eximdsn-123--
"""

GMAIL = b"""Delivered-To: bounces@shop.example
Return-Path: <>
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: bounces@shop.example
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
Message-ID: <65a1b2c3.050a0220.abcd.1234.GMR@mx.google.com>
Date: Mon, 23 Nov 2026 02:03:04 -0800 (PST)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="000000000000abcdef"; report-type=delivery-status

--000000000000abcdef
Content-Type: multipart/related; boundary="000000000000abcd12"

--000000000000abcd12
Content-Type: multipart/alternative; boundary="000000000000abcd34"

--000000000000abcd34
Content-Type: text/plain; charset="UTF-8"


** Address not found **

Your message wasn't delivered to Gone.User@gmail.com because the address couldn't be found.

The response was:

The email account that you tried to reach does not exist.

--000000000000abcd34--
--000000000000abcd12--
--000000000000abcdef
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Received-From-MTA: dns; news@shop.example
Arrival-Date: Mon, 23 Nov 2026 02:03:03 -0800 (PST)
X-Original-Message-ID: <dsp-9-1001@shop.example>

Final-Recipient: rfc822; Gone.User@gmail.com
Action: failed
Status: 5.1.1
Remote-MTA: dns; gmail-smtp-in.l.google.com. (2a00:1450:400c:c0b::1b, the server for the domain gmail.com.)
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try
 550-5.1.1 double-checking the recipient's email address for typos or
 550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser
 a1-20020a5d4a01si1234wrq.101 - gsmtp
Last-Attempt-Date: Mon, 23 Nov 2026 02:03:04 -0800 (PST)

--000000000000abcdef
Content-Type: message/rfc822

From: Shop <news@shop.example>
To: Gone.User@gmail.com
Subject: Sale
Message-ID: <dsp-9-1001@shop.example>

--000000000000abcdef--
"""

OLD_EXIM_TEXT = b"""From: Mail Delivery System <Mailer-Daemon@old.example>
To: bounces@shop.example
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: a@old.example, b@old.example

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  a@old.example
    SMTP error from remote mail server after RCPT TO:<a@old.example>:
    550 No such user here

------ This is a copy of the message, including all the headers. ------

Message-ID: <dsp-4-40@shop.example>
Subject: Sale
"""

MULTI = b"""From: MAILER-DAEMON@mx.shop.example
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Two results.
--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.shop.example

Final-Recipient: rfc822; ok@example.com
Action: delivered
Status: 2.0.0

Final-Recipient: rfc822; <bad@example.com>
Action: failed
Status: 5.7.1
Diagnostic-Code: smtp; 554 5.7.1 Message rejected as spam

Final-Recipient: rfc822; weird@example.com
Action: exploded
Status: 5.0.0
--B--
"""


def test_postfix_hard_bounce() -> None:
    assert parse_dsn(POSTFIX) == [
        DsnReport(
            recipient="nobody@example.net",
            action="failed",
            status="5.1.1",
            diagnostic="550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in virtual "
            "mailbox table",
            original_message_id="<dsp-12-345@shop.example>",
            message_key=(12, 345),
        )
    ]
    assert parse_dsn(POSTFIX)[0].bounce == "hard"


def test_exim_delay_is_soft_and_found_by_our_header() -> None:
    [report] = parse_dsn(EXIM)
    assert (report.recipient, report.action, report.status) == ("full@example.org", "delayed", "4.2.2")
    assert report.message_key == (3, 77)
    assert report.original_message_id == "<something-else@shop.example>"
    assert report.bounce == "soft"


def test_gmail_bounce_with_folded_diagnostic() -> None:
    [report] = parse_dsn(GMAIL)
    assert report.recipient == "gone.user@gmail.com"
    assert report.status == "5.1.1"
    assert report.message_key == (9, 1001)
    assert report.diagnostic.startswith("550-5.1.1 The email account that you tried to reach does not exist.")
    assert "\n" not in report.diagnostic
    assert report.bounce == "hard"


def test_plain_text_bounce_falls_back_to_failed_recipients() -> None:
    reports = parse_dsn(OLD_EXIM_TEXT)
    assert [(r.recipient, r.action, r.status, r.message_key) for r in reports] == [
        ("a@old.example", "failed", "5.0.0", (4, 40)),
        ("b@old.example", "failed", "5.0.0", (4, 40)),
    ]
    assert reports[0].diagnostic == "550 No such user here"


def test_several_recipients_and_unknown_actions() -> None:
    reports = parse_dsn(MULTI)
    assert [(r.recipient, r.action, r.status, r.bounce) for r in reports] == [
        ("ok@example.com", "delivered", "2.0.0", None),
        ("bad@example.com", "failed", "5.7.1", "hard"),
    ]
    assert reports[1].message_key is None


@pytest.mark.parametrize(
    ("status", "kind"), [("5.1.1", "hard"), ("5.7.1", "hard"), ("4.2.2", "soft"), ("2.0.0", None), ("", None)]
)
def test_bounce_classes(status: str, kind: str | None) -> None:
    assert bounce_class(status) == kind


def test_status_from_the_diagnostic_when_the_field_is_missing() -> None:
    raw = MULTI.replace(b"Status: 5.7.1\n", b"")
    assert parse_dsn(raw)[1].status == "5.7.1"
    raw = MULTI.replace(b"Status: 5.7.1\n", b"").replace(b"554 5.7.1 Message", b"554 Message")
    assert parse_dsn(raw)[1].status == "5.0.0"


@pytest.mark.parametrize(
    "raw", [b"", b"not a mail at all", b"\xff\xfe\x00garbage", b"Content-Type: multipart/report\n\n--x"]
)
def test_junk_gives_nothing(raw: bytes) -> None:
    assert parse_dsn(raw) == []


@given(st.binary(max_size=2000))
def test_never_raises(raw: bytes) -> None:
    assert isinstance(parse_dsn(raw), list)


@given(st.integers(0, len(GMAIL)))
def test_truncated_bounces_never_raise(cut: int) -> None:
    assert isinstance(parse_dsn(GMAIL[:cut]), list)
