"""The e-mail and report part of ``dispatcher demo``: an e-mail campaign to the same list through the local
SMTP sink, then the per-batch / per-channel figures and the HTML report pages written to disk."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dispatcher.channels.fake_smtp import start_fake_smtp
from dispatcher.channels.fake_smtp_store import FakeSmtpConfig
from dispatcher.demo_campaign import Call, Say, watch

SUBJECT = "{{ first_name | default('Hello') }}, 20% off everything until Sunday"
TEXT = (
    "Hi {{ first_name | default('there') }},\n\nOur spring sale is on: 20% off everything until Sunday with "
    "code SPRING20.\n\nShop now: https://shop.example/spring\n\nUnsubscribe: {{ unsubscribe_url }}\n"
)
HTML = (
    "<p>Hi {{ first_name | default('there') }},</p><p>Our spring sale is on: <strong>20% off everything"
    "</strong> until Sunday with code <code>SPRING20</code>.</p>"
    '<p><a href="https://shop.example/spring">Shop now</a></p>'
    '<p style="font-size:12px"><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
)


async def run_email_campaign(
    call: Call, say: Say, key: str, list_id: int, stack: AsyncExitStack
) -> tuple[dict[str, Any], dict[str, int]]:
    say("\n-- an e-mail campaign through the local SMTP sink --")
    sink = await stack.enter_async_context(start_fake_smtp(FakeSmtpConfig(seed=7)))
    say(f"   fake SMTP sink on {sink.host}:{sink.port}")
    provider = await call(
        "POST",
        "/v1/providers",
        key,
        201,
        json={
            "name": "local-smtp",
            "channel": "email",
            "kind": "smtp",
            "price_per_segment": "0.0001",
            "config": {"host": sink.host, "port": sink.port, "tls": "none", "connections": 4},
        },
    )
    template = await call(
        "POST",
        "/v1/templates",
        key,
        201,
        json={"name": "spring-mail", "channel": "email", "subject": SUBJECT, "text": TEXT, "html": HTML},
    )
    campaign = await call(
        "POST",
        "/v1/campaigns",
        key,
        201,
        json={
            "name": "Spring sale (e-mail)",
            "channel": "email",
            "list_id": list_id,
            "template_id": template["id"],
            "provider_id": provider["id"],
            "sender": "news@shop.example",
            "schedule": {
                "windows": "00:00-24:00",
                "allowed": "00:00-24:00",
                "end_at": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
            },
        },
    )
    await call("POST", f"/v1/campaigns/{campaign['id']}/start", key, 200)
    final = await watch(call, say, key, campaign["id"])
    return final, sink.store.stats()


async def handed_once(
    call: Call, say: Say, key: str, campaign: dict[str, Any], received: dict[str, int], peer: str
) -> bool:
    """The provider's own count against the ledger's: every message accepted once, none twice."""
    report = await call("GET", f"/v1/reports/campaigns/{campaign['id']}", key, 200)
    accepted = report["totals"]["sent"]
    say(
        f"   {peer} received {received['messages']} for {received['unique_recipients']} recipients "
        f"({received['recipients_with_duplicates']} twice); the ledger says {accepted} accepted"
    )
    exact = received["messages"] == accepted and not received["recipients_with_duplicates"]
    return campaign["state"] == "completed" and exact


async def show_reports(call: Call, say: Say, key: str, campaign_ids: list[int], out: Path) -> None:
    say("\n-- reports: per batch and per channel --")
    report = await call("GET", "/v1/reports?group_by=channel,batch", key, 200)
    heads = ("channel", "batch", "sent", "delivered", "arrival", "response", "cost")
    say("   {:<7} {:<13} {:>5} {:>9} {:>8} {:>8} {:>9}".format(*heads))
    for row in report["rows"]:
        group = row["group"]
        say(
            f"   {group.get('channel') or '-':<7} {group.get('batch') or group.get('batch_id')!s:<12} "
            f"{row['sent']:>5} {row['delivered']:>9} {_rate(row['arrival_rate']):>8} "
            f"{_rate(row['response_rate']):>8} {row['cost']:>9}"
        )
    for campaign_id in campaign_ids:
        page = await call("GET", f"/v1/reports/campaigns/{campaign_id}.html", key, 200)
        path = await asyncio.to_thread(_save, out / f"campaign-{campaign_id}.html", page)
        say(f"   HTML report of campaign {campaign_id}: {path}")
    overview = await call("GET", "/v1/reports.html", key, 200)
    say(f"   HTML overview: {await asyncio.to_thread(_save, out / 'overview.html', overview)}")


def _save(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path.resolve()


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
