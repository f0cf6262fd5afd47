"""``send_chunk``: one job sends one leased chunk of a campaign's ledger.

Order inside a chunk: gates (campaign still running, suppression, window, throughput, caps, budget) decide
which rows go; the rows that go are rendered, written as ``sending`` in one UPDATE, handed to the provider
in one batch, and the outcomes written back in one transaction. A crash between any two steps leaves rows
``queued`` or ``sending`` with a lease the sweeper hands back; ``sending`` rows keep their idempotency key.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from dispatcher.channels.base import OutboundSms, SendOutcome
from dispatcher.core.personalise import recipient_variables
from dispatcher.core.rendering import render
from dispatcher.core.sms import analyse_sms
from dispatcher.errors import TemplateError
from dispatcher.logs import get_logger
from dispatcher.pipeline.context import WorkerResources, queue, resources
from dispatcher.pipeline.gates import Gate, run_gates
from dispatcher.pipeline.limits import RateLimiter
from dispatcher.pipeline.runtime import CampaignRuntime, build_runtime
from dispatcher.storage import ledger
from dispatcher.storage.campaigns import Campaign
from dispatcher.storage.ledger import Due, Final, Retry, Sent

log = get_logger(__name__)
SUPPRESSION_REASON = {"unsubscribed": "stop", "invalid_number": "invalid_number", "not_mobile": "not_mobile"}


@dataclass
class Rendered:
    due: Due
    body: str
    segments: int


@dataclass
class Writes:
    sent: list[Sent] = field(default_factory=list)
    retries: list[Retry] = field(default_factory=list)
    finals: list[Final] = field(default_factory=list)
    suppress: list[tuple[str, str, str]] = field(default_factory=list)
    spent: Decimal = Decimal(0)


async def send_chunk(ctx: dict[str, Any], campaign_id: int, owner: str, ids: list[int]) -> dict[str, int]:
    res = resources(ctx)
    now = datetime.now(UTC)
    async with res.sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
        rows = await ledger.load_leased(session, ids, owner)
        if campaign is None or not rows:
            return {"skipped": len(ids)}
        runtime = await _runtime(res, session, campaign, now)
        blocked = await ledger.suppressed_among(
            session, runtime.workspace_id, runtime.channel, [r.address for r in rows]
        )
    if campaign.state != "running":  # paused or cancelled after the claim: hand the rows back untouched
        gate = Gate(retries=[Retry(r.id, now, "paused", None) for r in rows])
        await _hand_over(res, runtime, owner, [], gate, now)
        return {"handed_back": len(rows)}
    gate = await run_gates(queue(ctx), res.sessions, runtime, rows, blocked, now)
    rendered = _render_all(runtime, gate)
    outcomes = await _hand_over(res, runtime, owner, rendered, gate, now)
    writes = await _classify(queue(ctx), runtime, rendered, outcomes, datetime.now(UTC))
    await _write_results(res, runtime, owner, writes)
    return {
        "sent": len(writes.sent),
        "retried": len(writes.retries) + len(gate.retries),
        "final": len(writes.finals) + len(gate.finals),
    }


async def _runtime(res: WorkerResources, session: Any, campaign: Campaign, now: datetime) -> CampaignRuntime:
    cache: dict[int, CampaignRuntime] = res.extra.setdefault("campaigns", {})
    found = cache.get(campaign.id)
    if found is None:
        found = await build_runtime(session, campaign, res.http, now)
        cache[campaign.id] = found
    return found


def _render_all(runtime: CampaignRuntime, gate: Gate) -> list[Rendered]:
    """Rows whose template fails for this recipient fail once, with the reason; the rest go."""
    out: list[Rendered] = []
    for due in gate.go:
        try:
            body = render(runtime.templates[due.variant], recipient_variables({}, due.contact))
        except TemplateError as exc:
            gate.finals.append(Final(due.id, "failed", "render_failed", exc.message[:500]))
            continue
        out.append(Rendered(due, body, analyse_sms(body).segments))
    gate.go = []
    return out


async def _hand_over(
    res: WorkerResources,
    runtime: CampaignRuntime,
    owner: str,
    rendered: list[Rendered],
    gate: Gate,
    now: datetime,
) -> list[SendOutcome]:
    """One transaction settles the rows the gates stopped and marks the rest ``sending`` (the write before
    the call: the ambiguity window opens); then the provider gets the batch."""
    async with res.sessions.begin() as session:
        await ledger.finish(session, gate.finals, owner=owner, from_state="queued", now=now)
        await ledger.retry_later(session, gate.retries, owner=owner, from_state="queued", now=now)
        if not rendered:
            return []
        sending = set(
            await ledger.mark_sending(
                session,
                campaign_id=runtime.campaign_id,
                ids=[r.due.id for r in rendered],
                owner=owner,
                now=now,
                lease_until=now + timedelta(seconds=res.settings.send_lease_s),
            )
        )
    rendered[:] = [r for r in rendered if r.due.id in sending]
    outbound = [
        OutboundSms(
            message_id=r.due.id,
            to=r.due.address,
            sender=runtime.sender,
            body=r.body,
            idempotency_key=r.due.idempotency_key or ledger.idempotency_key(runtime.campaign_id, r.due.id),
            status_callback=res.extra.get("status_callback"),
        )
        for r in rendered
    ]
    return await runtime.channel_client.send_batch(outbound)


async def _classify(
    redis: Any, runtime: CampaignRuntime, rendered: list[Rendered], outcomes: list[SendOutcome], now: datetime
) -> Writes:
    writes = Writes()
    by_id = {r.due.id: r for r in rendered}
    for outcome in outcomes:
        item = by_id[outcome.message_id]
        if outcome.status == "sent":
            segments = outcome.segments or item.segments
            cost = runtime.price_per_segment * segments
            writes.sent.append(
                Sent(item.due.id, outcome.provider_message_id, segments, cost, outcome.possible_duplicate)
            )
            writes.spent += cost
        elif outcome.status == "transient":
            _transient(runtime, item, outcome, now, writes)
        else:
            writes.finals.append(
                Final(item.due.id, "failed", outcome.reason or "rejected", outcome.error_detail)
            )
            if outcome.suppresses and outcome.reason:
                reason = SUPPRESSION_REASON.get(outcome.reason, outcome.reason)
                writes.suppress.append(
                    (item.due.address, reason, f"provider, campaign {runtime.campaign_id}")
                )
    await _throttle(redis, runtime, outcomes)
    return writes


def _transient(
    runtime: CampaignRuntime, item: Rendered, outcome: SendOutcome, now: datetime, writes: Writes
) -> None:
    attempts = item.due.attempts + 1
    duplicate = outcome.possible_duplicate and not runtime.channel_client.supports_idempotency
    if attempts >= runtime.max_attempts:
        writes.finals.append(
            Final(item.due.id, "failed", outcome.reason or "transient", outcome.error_detail)
        )
        return
    # exponential back-off with full jitter, never sooner than the provider's Retry-After
    delay = max(outcome.retry_after or 0.0, random.uniform(0, min(300.0, 2.0**attempts)))
    writes.retries.append(
        Retry(item.due.id, now + timedelta(seconds=delay), outcome.reason, outcome.error_detail, duplicate)
    )


async def _throttle(redis: Any, runtime: CampaignRuntime, outcomes: list[SendOutcome]) -> None:
    waits = [
        o.retry_after
        for o in outcomes
        if o.status == "transient" and o.reason == "throttled" and o.retry_after
    ]
    if waits:
        await RateLimiter(redis).block(f"provider.{runtime.provider_id}", max(waits))


async def _write_results(res: WorkerResources, runtime: CampaignRuntime, owner: str, writes: Writes) -> None:
    now = datetime.now(UTC)
    async with res.sessions.begin() as session:
        await ledger.mark_sent(session, writes.sent, owner=owner, provider_id=runtime.provider_id, now=now)
        await ledger.retry_later(session, writes.retries, owner=owner, from_state="sending", now=now)
        await ledger.finish(session, writes.finals, owner=owner, from_state="sending", now=now)
        await ledger.add_suppressions(session, runtime.workspace_id, runtime.channel, writes.suppress, now)
        await ledger.add_spent(session, runtime.campaign_id, writes.spent, now=now)
