"""Frequency caps: how many marketing messages one contact may get on one channel.

Two limits per channel, both counted across every campaign: ``per_local_day`` sends within one calendar
day of the contact's zone (midnight to midnight on their clock, so 23:30 and 00:30 are different days,
and a DST day is 23 or 25 hours long), and ``per_rolling_days`` sends within the elapsed-time window
``(at - rolling_days * 24 h, at]``. A limit of 0 forbids the channel.

The day a send counts against is the contact's calendar day *now*: every send since the start of the
current local day, judged on the contact's clock today, whatever zone was current when it was made.

:func:`cap_decision` is the reference rule over a send history. Workers enforce the same rule atomically
in Redis with a Lua script over the keys from :func:`cap_keys`, all in one sorted set per contact and
channel:

``cap:{<channel>:<contact>}:r`` (``rolling_key``)
    A ZSET of send ids scored by send time in epoch milliseconds. TTL ``rolling_ttl``, refreshed on write.

One set serves both limits: the daily count is the sends scored within the local day
(``[day_start_ms, day_end_ms)``), so a contact costs one key, and rebuilding it from the ledger needs no
zone (only send ids and times). The braces are a Redis Cluster hash tag: every key of one contact and
channel shares a slot. Members are send ids (e.g. ``c<campaign>m<message>``), not counters, which makes
a reservation idempotent: a batch retried after a crash finds its own id and is let through without being
counted twice or capped by itself. The script, given ``member``, ``at_ms``, ``floor_ms``, the day's
bounds and the limits::

    if ZSCORE(rolling_key, member) then return 1 end            -- already reserved: allowed again
    ZREMRANGEBYSCORE(rolling_key, '-inf', floor_ms)              -- forget sends at or before the floor
    if ZCOUNT(rolling_key, day_start_ms, '(' .. day_end_ms) >= day_limit then return 0 end
    if ZCOUNT(rolling_key, '(' .. floor_ms, at_ms) >= rolling_limit then return 0 end
    ZADD(rolling_key, at_ms, member); EXPIRE(rolling_key, rolling_ttl)
    return 1

(The day's count looks past ``at_ms``, to the day's end: a send another worker stamped a little later,
its clock ahead, still counts today.) Releasing a reservation for a message finally not sent is ``ZREM``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from dispatcher.core._wallclock import require_aware, require_zone
from dispatcher.errors import InputError

_DAY = timedelta(days=1)
_SLACK = _DAY
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class CapPolicy:
    """The limits for one channel; the defaults are the product's (SPEC §5)."""

    per_local_day: int = 1
    per_rolling_days: int = 3
    rolling_days: int = 7

    def __post_init__(self) -> None:
        if self.per_local_day < 0 or self.per_rolling_days < 0:
            raise InputError("frequency caps cannot be negative")
        if self.rolling_days < 1:
            raise InputError("the rolling cap window must be at least one day")

    @property
    def rolling_window(self) -> timedelta:
        return timedelta(days=self.rolling_days)


@dataclass(frozen=True, slots=True)
class CapKeys:
    """Everything the Redis script needs for one reservation (see the module docstring)."""

    rolling_key: str
    rolling_ttl: int
    at_ms: int
    floor_ms: int
    day_start_ms: int
    day_end_ms: int
    day_limit: int
    rolling_limit: int


def contact_key(workspace_id: int, address: str) -> str:
    """Who a cap counts for: an address within one workspace (the same person on every list)."""
    return f"w{workspace_id}.{address}"


def send_key(campaign_id: int, message_id: int) -> str:
    """A send's member in the cap set: stable across retries of the same ledger row."""
    return f"c{campaign_id}m{message_id}"


def local_date_key(at: datetime, zone: str) -> str:
    """The contact's calendar date at ``at``, ISO formatted: the day a daily cap counts against."""
    return require_aware(at, "at").astimezone(require_zone(zone)).date().isoformat()


def cap_decision(history: Sequence[datetime], at: datetime, zone: str, policy: CapPolicy) -> bool:
    """Whether one more send at ``at`` stays within ``policy``, given the contact's earlier sends (UTC)."""
    at = require_aware(at, "at")
    tz = require_zone(zone)
    today = at.astimezone(tz).date()
    floor = at - policy.rolling_window
    same_day = in_window = 0
    for sent in history:
        sent = require_aware(sent, "history entry")
        same_day += sent.astimezone(tz).date() == today
        in_window += floor < sent <= at
    return same_day < policy.per_local_day and in_window < policy.per_rolling_days


def epoch_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def local_day_start(at: datetime, zone: str, *, days_later: int = 0) -> datetime:
    """Start of the contact's day at ``at`` (or of a later one), in UTC; a midnight lost to DST resolves to
    the first instant after it, a midnight that comes twice to the first time it comes."""
    tz = require_zone(zone)
    day = require_aware(at, "at").astimezone(tz).date() + timedelta(days=days_later)
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def cap_keys(contact_id: str | int, channel: str, at: datetime, zone: str, policy: CapPolicy) -> CapKeys:
    """The Redis keys and arguments for reserving a send of ``channel`` to ``contact_id`` at ``at``."""
    at = require_aware(at, "at")
    if not channel or any(char in str(channel) + str(contact_id) for char in "{}: "):
        raise InputError("channel and contact id must be non-empty and free of braces, colons and spaces")
    return CapKeys(
        rolling_key=f"cap:{{{channel}:{contact_id}}}:r",
        rolling_ttl=math.ceil((policy.rolling_window + _SLACK).total_seconds()),
        at_ms=epoch_ms(at),
        floor_ms=epoch_ms(at - policy.rolling_window),
        day_start_ms=epoch_ms(local_day_start(at, zone)),
        day_end_ms=epoch_ms(local_day_start(at, zone, days_later=1)),
        day_limit=policy.per_local_day,
        rolling_limit=policy.per_rolling_days,
    )
