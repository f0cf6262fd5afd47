"""Which provider a message goes through, and when a provider is taken out of the rotation.

**Routes.** A campaign sends through an ordered list of providers of its channel: its own ``provider_id``
first, then (unless the campaign turns failover off) every other enabled provider of the workspace on that
channel, by ``priority`` then id. A provider may narrow what it takes with ``routes`` in its config:
``prefixes`` (E.164 country or area prefixes such as ``+1`` or ``+4420``) and ``campaigns`` (ids). A
message goes to the first provider in the list that accepts it and whose circuit is closed; a message
that no provider's routes accept fails once (``no_route``).

**Ambiguous attempts.** A message whose last attempt may have reached its provider (a timeout after the
request left, a worker killed mid-call) is *pinned*: only that provider can deduplicate a resend (on the
idempotency key), so it retries there, even while that provider's circuit is open (it waits). A provider
without idempotency cannot deduplicate at all: the campaign's ``duplicate_policy`` decides — ``resend``
sends it again through any provider and counts it as a possible duplicate, ``never`` records it as failed
(``unconfirmed``) rather than risk a second copy.

**Circuit breaker.** Failures that say the provider is unwell (5xx, timeouts, refused connections) are
counted per provider in fixed windows shared by all workers. When at least ``min_calls`` calls in a window
failed at ``failure_ratio`` or worse, the circuit opens for ``open_s`` seconds: traffic goes to the next
provider. When it closes again the next calls are the probe: if they fail as before it opens again.
Throttling (429) is not a failure: it is a rate signal, handled by the rate limiter.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final, Literal

#: Transient outcome reasons that count against a provider's health.
UNHEALTHY_REASONS: Final = frozenset({"server_error", "timeout", "connection", "bad_response"})

Decision = Literal["send", "wait", "unconfirmed", "no_route"]


@dataclass(frozen=True, slots=True)
class Route:
    provider_id: int
    idempotent: bool
    prefixes: tuple[str, ...] = ()
    campaigns: tuple[int, ...] = ()

    def accepts(self, address: str, campaign_id: int) -> bool:
        if self.campaigns and campaign_id not in self.campaigns:
            return False
        return not self.prefixes or any(address.startswith(p) for p in self.prefixes)


@dataclass(frozen=True, slots=True)
class Choice:
    decision: Decision
    provider_id: int | None = None
    possible_duplicate: bool = False


def order_routes(primary_id: int | None, routes: Sequence[tuple[Route, int]]) -> list[Route]:
    """``routes`` as ``(route, priority)``: the primary first, then by priority (lower first), then id."""

    def rank(pair: tuple[Route, int]) -> tuple[bool, int, int]:
        route, priority = pair
        return (route.provider_id != primary_id, priority, route.provider_id)

    return [route for route, _ in sorted(routes, key=rank)]


def choose(
    routes: Sequence[Route],
    *,
    address: str,
    campaign_id: int,
    open_circuits: Collection[int],
    pinned_to: int | None,
    duplicate_policy: str,
) -> Choice:
    """Where one message goes now. ``pinned_to``: the provider of an ambiguous last attempt, else None."""
    if pinned_to is not None:
        pinned = next((r for r in routes if r.provider_id == pinned_to), None)
        if pinned is not None and pinned.idempotent:
            if pinned_to in open_circuits:
                return Choice("wait")
            return Choice("send", pinned_to)
        if duplicate_policy != "resend":
            return Choice("unconfirmed")
        choice = _first_open(routes, address, campaign_id, open_circuits)
        return Choice(choice.decision, choice.provider_id, possible_duplicate=True)
    return _first_open(routes, address, campaign_id, open_circuits)


def _first_open(
    routes: Sequence[Route], address: str, campaign_id: int, open_circuits: Collection[int]
) -> Choice:
    accepting = [r for r in routes if r.accepts(address, campaign_id)]
    if not accepting:
        return Choice("no_route")
    for route in accepting:
        if route.provider_id not in open_circuits:
            return Choice("send", route.provider_id)
    return Choice("wait")


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    min_calls: int = 20
    failure_ratio: float = 0.5
    window_s: int = 30
    open_s: int = 30

    def trips(self, calls: int, failures: int) -> bool:
        return calls >= self.min_calls and failures >= self.failure_ratio * calls


def health_counts(reasons: Sequence[tuple[str, str | None]]) -> tuple[int, int]:
    """``(calls, failures)`` for a batch of ``(status, reason)`` outcomes; throttling counts as neither."""
    calls = failures = 0
    for status, reason in reasons:
        if status == "transient" and reason == "throttled":
            continue
        calls += 1
        if status == "transient" and reason in UNHEALTHY_REASONS:
            failures += 1
    return calls, failures
