"""``send_chunk``: one job sends one leased chunk of a campaign's ledger.

Order inside a chunk: gates (campaign still running, suppression, window, route, throughput, caps) decide
which rows go and through which provider; the rows that go are rendered, their cost is reserved against the
budget, they are written as ``sending`` (with their provider) in one transaction, handed to each provider
in one batch (providers in parallel), and the outcomes written back in one transaction. A crash between any
two steps leaves rows ``queued`` or ``sending`` with a lease the sweeper hands back; ``sending`` rows keep
their idempotency key and are pinned to the provider that may have them (see core/routing).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import jinja2

from dispatcher.channels.base import EmailChannel, OutboundEmail, OutboundSms, SendOutcome, SmsChannel
from dispatcher.errors import InputError
from dispatcher.logs import get_logger
from dispatcher.pipeline.breaker import Breakers
from dispatcher.pipeline.budget import Budget
from dispatcher.pipeline.channels import channel_factory
from dispatcher.pipeline.compose import Composer, Rendered, Urls
from dispatcher.pipeline.context import WorkerResources, queue, resources
from dispatcher.pipeline.gates import Gate, give_back_caps, held_back, never_arrived, run_gates
from dispatcher.pipeline.outcomes import Writes, bounce_rate_exceeded, classify, throttle
from dispatcher.pipeline.runtime import CampaignRuntime, ChannelPool, ProviderRoute, build_runtime
from dispatcher.pipeline.tracking import campaign_links
from dispatcher.storage import campaigns_q, leases, ledger, suppressions
from dispatcher.storage.campaigns import Campaign
from dispatcher.storage.ledger_rows import Final, Retry

log = get_logger(__name__)
MICROS = Decimal(1_000_000)


async def send_chunk(ctx: dict[str, Any], campaign_id: int, owner: str, ids: list[int]) -> dict[str, int]:
    res = resources(ctx)
    now = res.clock()
    async with res.sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
        rows = await ledger.load_leased(session, ids, owner)
        if campaign is None or not rows:
            return {"skipped": len(ids)}
        runtime, composer = await _runtime(res, session, campaign, now)
        blocked = await suppressions.suppressed_among(
            session, runtime.workspace_id, runtime.channel, [r.address for r in rows]
        )
    if campaign.state != "running":  # paused or cancelled after the claim: hand the rows back untouched
        gate = Gate(retries=[Retry(r.id, now, "paused", None) for r in rows])
        await _mark_sending(res, runtime, owner, {}, gate, now)
        return {"handed_back": len(rows)}
    prepare = partial(_render_all, composer)
    gate = await run_gates(queue(ctx), res.sessions, runtime, rows, blocked, now, prepare)
    rendered = [gate.rendered[due.id] for due in gate.go]
    groups = await _reserve_budget(queue(ctx), runtime, campaign, _group(gate, rendered), gate, now)
    await give_back_caps(queue(ctx), runtime, gate, held_back(gate), now)
    groups = await _mark_sending(res, runtime, owner, groups, gate, now)
    async with _leases_kept(res, owner, [item.due.id for items in groups.values() for item in items]):
        writes = await _send_all(queue(ctx), runtime, composer, groups)
        await give_back_caps(queue(ctx), runtime, gate, never_arrived(gate, writes), now)
        await _write_results(res, runtime, owner, writes)
    await _after(ctx, res, runtime, writes, gate, budgeted=campaign.budget is not None)
    return {
        "sent": sum(len(v) for v in writes.sent.values()),
        "retried": len(writes.retries) + len(gate.retries),
        "final": len(writes.finals) + len(gate.finals),
    }


async def _runtime(
    res: WorkerResources, session: Any, campaign: Campaign, now: datetime
) -> tuple[CampaignRuntime, Composer]:
    cache: dict[int, tuple[CampaignRuntime, Composer]] = res.extra.setdefault("campaigns", {})
    found = cache.get(campaign.id)
    if found is None or found[0].stale:
        pool = res.extra.get("channel_pool")
        if not isinstance(pool, ChannelPool):
            pool = res.extra["channel_pool"] = ChannelPool(channel_factory(res))
        runtime = await build_runtime(session, campaign, pool, now, links=lambda *a: campaign_links(res, *a))
        urls = Urls(res.settings.public_base_url, res.settings.secret_key)
        found = cache[campaign.id] = (runtime, Composer(runtime, urls))
    return found


def _render_all(composer: Composer, gate: Gate) -> None:
    """Render each row and build what its provider is handed, before anything is marked ``sending``.

    A row whose message cannot be built for its recipient (a variable missing from the contact, a value a
    filter refuses, a subject a header cannot carry) fails once, permanently, as ``render_error``; the
    rest of the chunk goes on."""
    going = []
    providers = composer.runtime.providers
    for due in gate.go:
        try:
            item = composer.render(due)
            composer.prepare(providers[gate.provider[due.id]], item)
        except (InputError, jinja2.TemplateError) as exc:
            detail = exc.message if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
            gate.finals.append(Final(due.id, "failed", "render_error", detail[:500]))
            continue
        gate.rendered[due.id] = item
        going.append(due)
    gate.go = going


def _group(gate: Gate, rendered: list[Rendered]) -> dict[tuple[int, bool], list[Rendered]]:
    """By (provider, resent after doubt): each group is one ``sending`` UPDATE and one provider batch."""
    groups: dict[tuple[int, bool], list[Rendered]] = {}
    for item in rendered:
        key = (gate.provider[item.due.id], item.due.id in gate.duplicates)
        groups.setdefault(key, []).append(item)
    return groups


def _cost(runtime: CampaignRuntime, provider_id: int, items: Sequence[Rendered]) -> Decimal:
    price = runtime.providers[provider_id].price
    return sum((price * item.segments for item in items), Decimal(0))


async def _reserve_budget(
    redis: Any,
    runtime: CampaignRuntime,
    campaign: Campaign,
    groups: dict[tuple[int, bool], list[Rendered]],
    gate: Gate,
    now: datetime,
) -> dict[tuple[int, bool], list[Rendered]]:
    """Reserve each group's cost against the campaign's budget (shared by every worker); a group that no
    longer fits waits, and the campaign pauses until someone raises the budget."""
    if campaign.budget is None:
        return groups
    budget = Budget(redis, spent=lambda _: _spent_micros(campaign))
    cap = int(Decimal(campaign.budget) * MICROS)
    kept: dict[tuple[int, bool], list[Rendered]] = {}
    for key, items in groups.items():
        amount = int(_cost(runtime, key[0], items) * MICROS)
        if await budget.spend(runtime.campaign_id, amount, cap):
            kept[key] = items
            continue
        gate.retries += [Retry(i.due.id, now + timedelta(minutes=1), "budget_exhausted", None) for i in items]
        gate.pause = "budget_exhausted"
    return kept


async def _spent_micros(campaign: Campaign) -> int:
    return int(Decimal(campaign.spent or 0) * MICROS)


async def _mark_sending(
    res: WorkerResources,
    runtime: CampaignRuntime,
    owner: str,
    groups: dict[tuple[int, bool], list[Rendered]],
    gate: Gate,
    now: datetime,
) -> dict[tuple[int, bool], list[Rendered]]:
    """One transaction settles the rows the gates stopped and marks the rest ``sending`` (the write before
    the call: the ambiguity window opens)."""
    kept: dict[tuple[int, bool], list[Rendered]] = {}
    async with res.sessions.begin() as session:
        await ledger.finish(session, gate.finals, owner=owner, from_state="queued", now=now)
        await ledger.retry_later(session, gate.retries, owner=owner, from_state="queued", now=now)
        for (provider_id, duplicate), items in groups.items():
            sending = set(
                await ledger.mark_sending(
                    session,
                    campaign_id=runtime.campaign_id,
                    ids=[item.due.id for item in items],
                    owner=owner,
                    now=now,
                    lease_until=now + timedelta(seconds=res.settings.send_lease_s),
                    provider_id=provider_id,
                    possible_duplicate=duplicate,
                )
            )
            kept[(provider_id, duplicate)] = [item for item in items if item.due.id in sending]
    return kept


@asynccontextmanager
async def _leases_kept(res: WorkerResources, owner: str, ids: list[int]) -> AsyncIterator[None]:
    """Renew the chunk's leases while its sends and writes run: a slow provider must not let the sweeper
    hand rows still in flight to another job. If this worker dies, renewals stop and the sweeper recovers
    the rows as usual."""
    lease = res.settings.send_lease_s

    async def renew() -> None:
        while True:
            await asyncio.sleep(lease / 3)
            try:
                async with res.sessions.begin() as session:
                    until = res.clock() + timedelta(seconds=lease)
                    await leases.extend_leases(session, ids, owner=owner, until=until)
            except Exception:
                log.warning("lease renewal failed", exc_info=True)

    keeper = asyncio.create_task(renew()) if ids else None
    try:
        yield
    finally:
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper


async def _send_all(
    redis: Any, runtime: CampaignRuntime, composer: Composer, groups: dict[tuple[int, bool], list[Rendered]]
) -> Writes:
    jobs = [(runtime.providers[key[0]], items) for key, items in groups.items() if items]
    answers = await asyncio.gather(*(_send_group(composer, route, items) for route, items in jobs))
    writes = Writes()
    now = datetime.now(UTC)
    breakers = Breakers(redis)
    for (route, items), outcomes in zip(jobs, answers, strict=True):
        classify(runtime, route, items, outcomes, now, writes)
        await throttle(redis, route, outcomes)
        await breakers.record(route.provider_id, [(o.status, o.reason) for o in outcomes])
    return writes


async def _send_group(composer: Composer, route: ProviderRoute, items: list[Rendered]) -> list[SendOutcome]:
    client = route.client
    if composer.runtime.channel == "sms":
        sms = [item.outbound for item in items if isinstance(item.outbound, OutboundSms)]
        return await _as_sms(client).send_batch(sms)
    emails = [item.outbound for item in items if isinstance(item.outbound, OutboundEmail)]
    return await _as_email(client).send_batch(emails)


def _as_sms(client: SmsChannel | EmailChannel) -> SmsChannel:
    return client  # type: ignore[return-value]  # the runtime built it for the campaign's channel


def _as_email(client: SmsChannel | EmailChannel) -> EmailChannel:
    return client  # type: ignore[return-value]


async def _write_results(res: WorkerResources, runtime: CampaignRuntime, owner: str, writes: Writes) -> None:
    now = datetime.now(UTC)
    async with res.sessions.begin() as session:
        for provider_id, sent in writes.sent.items():
            await ledger.mark_sent(session, sent, owner=owner, provider_id=provider_id, now=now)
        await ledger.retry_later(session, writes.retries, owner=owner, from_state="sending", now=now)
        await ledger.finish(session, writes.finals, owner=owner, from_state="sending", now=now)
        await suppressions.add_suppressions(
            session, runtime.workspace_id, runtime.channel, writes.suppress, now
        )
        await campaigns_q.add_spent(session, runtime.campaign_id, writes.spent, now=now)


async def _after(
    ctx: dict[str, Any],
    res: WorkerResources,
    runtime: CampaignRuntime,
    writes: Writes,
    gate: Gate,
    *,
    budgeted: bool,
) -> None:
    redis = queue(ctx)
    if budgeted and writes.refunds:
        await Budget(redis).refund(runtime.campaign_id, int(writes.refunds * MICROS))
    reason = gate.pause
    if reason is None and await bounce_rate_exceeded(redis, runtime, writes):
        reason = "bounce_rate"
    if reason is not None:
        await _auto_pause(res, runtime.campaign_id, reason)


async def _auto_pause(res: WorkerResources, campaign_id: int, reason: str) -> None:
    async with res.sessions.begin() as session:
        moved = await campaigns_q.move_if(session, campaign_id, "running", "paused", now=datetime.now(UTC))
        if moved:
            await campaigns_q.set_fields(session, campaign_id, pause_reason=reason)
    if moved:
        log.warning("campaign.auto_paused", campaign_id=campaign_id, reason=reason)
