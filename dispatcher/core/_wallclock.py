"""Wall-clock arithmetic shared by :mod:`dispatcher.core.windows` and :mod:`dispatcher.core.capping`.

The one idea here: a zone's UTC offset is constant between two transitions, so on each constant-offset
segment of the UTC timeline the local wall clock is ``utc + offset`` and strictly increasing. The preimage
of a local wall-clock interval is therefore exact and simple to compute per segment, with no guessing
about nonexistent (spring-forward) or repeated (fall-back) local times: a wall-clock time inside a gap
simply has no UTC instant, and a repeated one has two.

zoneinfo does not publish its transition table, so segments are found by probing the offset every few
hours and bisecting to the second where it changes (tzdata transitions fall on whole seconds). Two
transitions closer together than the probe step would be missed; no zone has had such a pair since 1970.

Intervals are half-open ``(start, end)`` pairs of aware UTC datetimes, sorted and disjoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from dispatcher.errors import InputError

Interval = tuple[datetime, datetime]
LocalSpan = tuple[timedelta, timedelta]
"""A daily wall-clock span as offsets from local midnight, ``end`` up to 24 h."""

_PROBE_STEP = timedelta(hours=6)
_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)


@lru_cache(maxsize=1024)
def load_zone(name: str) -> ZoneInfo | None:
    """None for anything that is not an IANA key (phonenumbers says ``Etc/Unknown``; users type junk)."""
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        return None


def require_zone(name: str) -> ZoneInfo:
    zone = load_zone(name)
    if zone is None:
        raise InputError(f"unknown time zone {name!r}")
    return zone


def require_aware(value: datetime, name: str) -> datetime:
    """Naive datetimes are rejected rather than guessed at: a wrong guess shifts a send by hours."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InputError(f"{name} must be a timezone-aware datetime, got {value.isoformat()}")
    return value.astimezone(UTC)


def _offset(zone: ZoneInfo, at: datetime) -> timedelta:
    offset = at.astimezone(zone).utcoffset()
    assert offset is not None  # zoneinfo always knows its offset
    return offset


def _first_change(zone: ZoneInfo, low: datetime, high: datetime, offset: timedelta) -> datetime:
    """Bisect (low has ``offset``, high does not) down to the whole second where the offset changes."""
    while high - low > _SECOND:
        middle = low + timedelta(seconds=int((high - low).total_seconds()) // 2)
        if _offset(zone, middle) == offset:
            low = middle
        else:
            high = middle
    return high


def offset_segments(
    zone: ZoneInfo, start: datetime, end: datetime
) -> list[tuple[datetime, datetime, timedelta]]:
    """Split ``[start, end)`` (whole seconds) into maximal pieces of constant UTC offset."""
    segments: list[tuple[datetime, datetime, timedelta]] = []
    segment_start, offset, cursor = start, _offset(zone, start), start
    while cursor < end:
        probe = min(cursor + _PROBE_STEP, end)
        if _offset(zone, probe) == offset:
            cursor = probe
            continue
        change = _first_change(zone, cursor, probe, offset)
        segments.append((segment_start, change, offset))
        segment_start, offset, cursor = change, _offset(zone, change), change
    if segment_start < end:
        segments.append((segment_start, end, offset))
    return segments


def zone_intervals(
    zone: ZoneInfo, spans: Sequence[LocalSpan], start: datetime, end: datetime
) -> list[Interval]:
    """UTC instants in ``[start, end)`` whose local wall-clock time of day lies in one of ``spans``.

    Wall-clock times are carried as UTC-aware datetimes (``utc + offset``) so no naive datetime exists.
    """
    span_start = (start - _DAY).replace(microsecond=0)
    span_end = (end + _DAY).replace(microsecond=0)
    found: list[Interval] = []
    for segment_start, segment_end, offset in offset_segments(zone, span_start, span_end):
        wall_start, wall_end = segment_start + offset, segment_end + offset
        day = wall_start.date()
        while (midnight := datetime.combine(day, time(0), tzinfo=UTC)) < wall_end:
            for local_start, local_end in spans:
                low, high = max(midnight + local_start, wall_start), min(midnight + local_end, wall_end)
                if low < high:
                    found.append((low - offset, high - offset))
            day += _DAY
    return clip(merge(found), start, end)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sort and join overlapping or touching intervals (touching ones leave no instant uncovered)."""
    merged: list[Interval] = []
    for low, high in sorted(intervals):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def intersect(left: Sequence[Interval], right: Sequence[Interval]) -> list[Interval]:
    """Two-pointer intersection of two sorted disjoint interval lists."""
    result: list[Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        low, high = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
        if low < high:
            result.append((low, high))
        if left[i][1] <= right[j][1]:
            i += 1
        else:
            j += 1
    return result


def clip(intervals: Iterable[Interval], start: datetime, end: datetime) -> list[Interval]:
    return [(max(low, start), min(high, end)) for low, high in intervals if high > start and low < end]
