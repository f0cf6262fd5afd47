"""What the sender writes back after a provider answered: sent, retry later, or final; and the watchers
that act on the answers (circuit breakers, rate back-off, auto-pause on a bounce rate above the limit).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from dispatcher.channels.base import SendOutcome
from dispatcher.logs import get_logger
from dispatcher.pipeline.compose import Rendered
from dispatcher.pipeline.runtime import CampaignRuntime, ProviderRoute
from dispatcher.pipeline.throughput import RateLimiter
from dispatcher.storage.ledger_rows import Final, Retry, Sent

log = get_logger(__name__)
SUPPRESSION_REASON = {
    "unsubscribed": "stop",
    "invalid_number": "invalid_number",
    "not_mobile": "not_mobile",
    "hard_bounce": "hard_bounce",
    "invalid_address": "hard_bounce",
    "complaint": "complaint",
}
#: Permanent reasons counted by the bounce-rate watch: the address is bad, not the message.
BOUNCES = frozenset({"invalid_number", "not_mobile", "hard_bounce", "invalid_address"})


@dataclass
class Writes:
    sent: dict[int, list[Sent]] = field(default_factory=dict)  # by provider
    retries: list[Retry] = field(default_factory=list)
    finals: list[Final] = field(default_factory=list)
    suppress: list[tuple[str, str, str]] = field(default_factory=list)
    spent: Decimal = Decimal(0)
    refunds: Decimal = Decimal(0)  # reserved budget of messages that did not go
    bounces: int = 0
    settled: int = 0  # sent + permanently failed: the bounce rate's denominator


def classify(
    runtime: CampaignRuntime,
    route: ProviderRoute,
    items: Sequence[Rendered],
    outcomes: Sequence[SendOutcome],
    now: datetime,
    writes: Writes,
) -> None:
    by_id = {item.due.id: item for item in items}
    price = route.price
    costs: dict[int, Decimal] = {}  # segments → cost: a chunk's messages mostly share a length
    sent = writes.sent.setdefault(route.provider_id, [])
    for outcome in outcomes:
        item = by_id[outcome.message_id]
        estimate = costs.get(item.segments)
        if estimate is None:
            estimate = costs[item.segments] = price * item.segments
        if outcome.status == "sent":
            segments = outcome.segments or item.segments
            cost = costs.get(segments)
            if cost is None:
                cost = costs[segments] = price * segments
            pmid, duplicate = outcome.provider_message_id, outcome.possible_duplicate
            sent.append(Sent(item.due.id, pmid, segments, cost, duplicate))
            writes.spent += cost
            if cost is not estimate:  # the provider counted other segments than we reserved for
                writes.refunds += max(Decimal(0), estimate - cost)
            writes.settled += 1
        elif outcome.status == "transient":
            writes.refunds += estimate
            _transient(runtime, route, item, outcome, now, writes)
        else:
            writes.refunds += estimate
            _permanent(runtime, item, outcome, writes)


def _permanent(runtime: CampaignRuntime, item: Rendered, outcome: SendOutcome, writes: Writes) -> None:
    writes.finals.append(Final(item.due.id, "failed", outcome.reason or "rejected", outcome.error_detail))
    writes.settled += 1
    if outcome.reason in BOUNCES:
        writes.bounces += 1
    if outcome.suppresses and outcome.reason:
        reason = SUPPRESSION_REASON.get(outcome.reason, outcome.reason)
        writes.suppress.append((item.due.address, reason, f"provider, campaign {runtime.campaign_id}"))


def _transient(
    runtime: CampaignRuntime,
    route: ProviderRoute,
    item: Rendered,
    outcome: SendOutcome,
    now: datetime,
    writes: Writes,
) -> None:
    attempts = item.due.attempts + 1
    throttled = outcome.reason == "throttled"
    # being throttled, or finding the provider unreachable before handing anything over, says nothing
    # about the message: the attempt is given back and the row waits (failover, the provider's return)
    counted = not (throttled or (outcome.reason == "connection" and not outcome.possible_duplicate))
    ambiguous = outcome.possible_duplicate
    in_doubt = ambiguous or item.due.ambiguous  # this or an earlier attempt may have reached the provider
    if counted and attempts >= runtime.max_attempts:
        if not in_doubt:
            writes.finals.append(
                Final(item.due.id, "failed", outcome.reason or "transient", outcome.error_detail)
            )
            return
        if not route.client.supports_idempotency:  # it may have arrived: never reported as a plain failure
            writes.finals.append(Final(item.due.id, "failed", "unconfirmed", outcome.error_detail))
            return
        # a deduplicating provider drops a resend of what it already has: keep asking until it confirms
    duplicate = ambiguous and not route.client.supports_idempotency
    if throttled:
        delay = (outcome.retry_after or 1.0) + random.uniform(0, 1.0)
    else:  # exponential back-off with full jitter, never sooner than the provider's Retry-After
        delay = max(outcome.retry_after or 0.0, random.uniform(0, min(300.0, 2.0 ** min(attempts, 9))))
    writes.retries.append(
        Retry(
            item.due.id,
            now + timedelta(seconds=delay),
            outcome.reason,
            outcome.error_detail,
            duplicate,
            ambiguous=in_doubt,  # carried: a later plain failure does not settle the earlier doubt
            counted=counted,
        )
    )


async def throttle(redis: Any, route: ProviderRoute, outcomes: Sequence[SendOutcome]) -> None:
    """A provider's ``Retry-After`` stops every worker's sends to it until it passes."""
    waits = [
        o.retry_after
        for o in outcomes
        if o.status == "transient" and o.reason == "throttled" and o.retry_after
    ]
    if waits:
        await RateLimiter(redis).block(f"provider.{route.provider_id}", max(waits))


async def bounce_rate_exceeded(redis: Any, runtime: CampaignRuntime, writes: Writes) -> bool:
    """Count this chunk into the campaign's running tally (shared by every worker); True when the bounce
    rate is above the campaign's limit over at least ``bounce_min_sample`` settled messages.

    The tally lives in Redis: after a restart it starts again from zero, which only delays the pause.
    """
    if not writes.settled:
        return False
    key = f"bounces:{{c{runtime.campaign_id}}}"
    pipe = redis.pipeline(transaction=False)
    pipe.hincrby(key, "settled", writes.settled)
    pipe.hincrby(key, "bounced", writes.bounces)
    pipe.expire(key, 30 * 86_400)
    settled, bounced, _ = await pipe.execute()
    settled, bounced = int(settled), int(bounced)
    return settled >= runtime.bounce_min_sample and bounced > runtime.max_bounce_rate * settled
