"""Report maths: what every number in a dispatcher report means.

A report groups send-ledger rows (one per campaign and recipient) and the events that came back for them.
The database counts (:mod:`dispatcher.storage.reports`); this module turns one group's counts into the
published figures. Every rate is a plain fraction; a rate whose denominator is zero is ``None`` (shown as
``null`` / an empty CSV cell), never 0 and never an error.

Counts (per group of ledger rows):

``messages``
    ledger rows: every recipient the campaign planned, whatever became of them.
``sent``
    rows the provider accepted: ``sent_at`` is set, or the state is ``sent`` or ``delivered``.
``delivered``
    rows whose delivery receipt said delivered (state ``delivered``).
``failed``
    rows in state ``failed``: refused at submission or reported undelivered by a receipt.
``pending``
    rows still ``planned``, ``queued`` or ``sending``.
``expired``, ``suppressed``, ``capped``, ``cancelled``
    rows that ended in those states without being sent.
``possible_duplicates``
    rows resent after an attempt whose outcome was unknown (the recipient may have it twice).
``responders``, ``repliers``, ``clickers``, ``openers``, ``opted_out``, ``converters``
    unique contacts with a reply or a human click; a reply; a human click; a human open; an ``optout``
    (STOP …) or ``unsubscribe`` event; a conversion. Each message's events are first folded into one row
    (``GROUP BY message_id``), so a contact who clicked five times counts once. A campaign has one ledger
    row per contact, so within a campaign these are distinct contacts; across campaigns they add up like
    ``delivered`` does (a contact who answered two campaigns counts in each). Events count towards the
    group of the message they answer: periods are cohorts of sent messages, so a click on Tuesday on
    Monday's message counts for Monday.
``machine_openers``, ``machine_clickers``
    unique contacts with opens / clicks flagged as machine (mail scanners, link prefetch). Reported apart
    and never part of any rate below except their own.
``bounced``, ``complained``
    unique contacts with a ``bounce`` / ``complaint`` event.
``conversions``, ``conversion_value``
    conversion events (each counted once however often its callback arrived) and the sum of their values.
``cost``
    sum of the ledger's per-message cost (segments × provider price), in the provider's currency.
``median_seconds_to_delivery``
    median of ``delivered_at − sent_at`` over delivered rows (the mean of the middle two for an even count).

Rates:

===========================  =================================  ==========================
name                         numerator                          denominator
===========================  =================================  ==========================
``arrival_rate``             delivered                          sent
``response_rate``            responders                         delivered
``click_rate``               clickers (human)                   delivered
``reply_rate``               repliers                           delivered
``open_rate``                openers (human)                    delivered
``machine_open_rate``        machine_openers                    delivered
``optout_rate``              opted_out                          delivered
``conversion_rate``          converters                         delivered
``bounce_rate``              bounced                            sent
``complaint_rate``           complained                         delivered
``cost_per_delivered``       cost                               delivered
``cost_per_conversion``      cost                               conversions
===========================  =================================  ==========================

``arrival_rate`` lies in [0, 1] (delivered rows are a subset of sent rows). The engagement rates lie in
[0, 1] as long as every answering contact also has a delivery receipt; a provider that sends no receipts
(so ``delivered`` stays low) can push them above 1, which is reported as is rather than hidden.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

__all__ = [
    "COUNT_FIELDS",
    "RATE_FIELDS",
    "Figures",
    "Tally",
    "figures",
    "ratio",
]

_MONEY_STEP: Final = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class Tally:
    """One group's counts, as the database aggregated them."""

    messages: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    pending: int = 0
    expired: int = 0
    suppressed: int = 0
    capped: int = 0
    cancelled: int = 0
    possible_duplicates: int = 0
    responders: int = 0
    repliers: int = 0
    clickers: int = 0
    machine_clickers: int = 0
    openers: int = 0
    machine_openers: int = 0
    opted_out: int = 0
    converters: int = 0
    conversions: int = 0
    bounced: int = 0
    complained: int = 0
    conversion_value: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    median_seconds_to_delivery: float | None = None


COUNT_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Tally) if f.type == "int")


@dataclass(frozen=True, slots=True)
class Figures:
    """A tally with its rates: what a report row shows."""

    tally: Tally
    arrival_rate: float | None
    response_rate: float | None
    click_rate: float | None
    reply_rate: float | None
    open_rate: float | None
    machine_open_rate: float | None
    optout_rate: float | None
    conversion_rate: float | None
    bounce_rate: float | None
    complaint_rate: float | None
    cost_per_delivered: Decimal | None
    cost_per_conversion: Decimal | None


RATE_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Figures) if f.name != "tally")


def ratio(numerator: int, denominator: int) -> float | None:
    """``numerator / denominator``, or ``None`` when there is nothing to divide by."""
    if denominator <= 0:
        return None
    return numerator / denominator


def _money_per(amount: Decimal, count: int) -> Decimal | None:
    if count <= 0:
        return None
    return (amount / count).quantize(_MONEY_STEP, rounding=ROUND_HALF_EVEN)


def figures(tally: Tally) -> Figures:
    delivered = tally.delivered
    return Figures(
        tally=tally,
        arrival_rate=ratio(delivered, tally.sent),
        response_rate=ratio(tally.responders, delivered),
        click_rate=ratio(tally.clickers, delivered),
        reply_rate=ratio(tally.repliers, delivered),
        open_rate=ratio(tally.openers, delivered),
        machine_open_rate=ratio(tally.machine_openers, delivered),
        optout_rate=ratio(tally.opted_out, delivered),
        conversion_rate=ratio(tally.converters, delivered),
        bounce_rate=ratio(tally.bounced, tally.sent),
        complaint_rate=ratio(tally.complained, delivered),
        cost_per_delivered=_money_per(tally.cost, delivered),
        cost_per_conversion=_money_per(tally.cost, tally.conversions),
    )
