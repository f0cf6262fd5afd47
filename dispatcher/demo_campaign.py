"""The campaign part of ``dispatcher demo``: an SMS campaign to the imported list through real arq workers
and the local SMS provider stand-in, watched through the public API until every message is handed over."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

Call = Callable[..., Awaitable[Any]]
Say = Callable[[str], None]

TEMPLATE = (
    "Hi {{ first_name | default('there') }}, spring sale: 20% off everything until Sunday "
    "with code SPRING20. Reply STOP to opt out"
)


async def run_campaign(
    call: Call, say: Say, key: str, list_id: int, stub_url: str, account_sid: str, auth_token: str
) -> dict[str, Any]:
    say("\n-- an SMS campaign through the local SMS provider stand-in --")
    provider = await call(
        "POST",
        "/v1/providers",
        key,
        201,
        json={
            "name": "local-sms",
            "kind": "twilio_http",
            "price_per_segment": "0.0075",
            "rate_limit_per_s": 200,
            "config": {
                "base_url": stub_url,
                "account_sid": account_sid,
                "auth_token": auth_token,
                "from": ["+15005550006"],
            },
        },
    )
    template = await call(
        "POST", "/v1/templates", key, 201, json={"name": "spring-sale", "channel": "sms", "body": TEMPLATE}
    )
    preview = await call(
        "POST",
        f"/v1/templates/{template['id']}/preview",
        key,
        200,
        json={"variables": {"first_name": "Dana"}},
    )
    say(
        f"template preview: {preview.get('sms', preview).get('segments', '?')} segment(s): "
        f"{preview.get('parts', {}).get('body', '')!r}"
    )
    now = datetime.now(UTC)
    # the demo runs now, whatever the time of day: windows cover the whole day (defaults: 10:30-11:30, 15-17)
    campaign = await call(
        "POST",
        "/v1/campaigns",
        key,
        201,
        json={
            "name": "Spring sale",
            "channel": "sms",
            "list_id": list_id,
            "template_id": template["id"],
            "provider_id": provider["id"],
            "schedule": {
                "windows": "00:00-24:00",
                "allowed": "00:00-24:00",
                "end_at": (now + timedelta(days=2)).isoformat(),
            },
        },
    )
    await call("POST", f"/v1/campaigns/{campaign['id']}/start", key, 200)
    return await watch(call, say, key, campaign["id"])


async def watch(call: Call, say: Say, key: str, campaign_id: int) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(600):
        body = await call("GET", f"/v1/campaigns/{campaign_id}", key, 200)
        p = body["progress"]
        say(
            f"GET  /v1/campaigns/{campaign_id}      {body['state']:<10} planned {p['planned']:>4}  "
            f"queued {p['queued']:>3}  sent {p['sent']:>4}  delivered {p['delivered']:>4}  "
            f"failed {p['failed']}  spent {p['spent']}"
        )
        if body["state"] in {"completed", "cancelled"}:
            break
        await asyncio.sleep(0.5)
    return body


async def stub_stats(stub_url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{stub_url}/_stub/stats") as response:
        stats: dict[str, Any] = await response.json()
        return stats
