"""Send windows in the recipient's local time.

A message may go at instant *t* only when, in every candidate zone of its recipient, the local wall-clock
time of *t* lies inside a send window and inside the allowed (non-quiet) hours. Windows are half-open in
wall-clock time: ``10:30-11:30`` admits 10:30:00 and excludes 11:30:00. The end ``24:00`` (stored as
``time(0)``) means the following midnight.

DST, decided once and tested:

* The rule is about the wall clock, so it needs no special case: instants are converted to each zone's
  local time and checked there (see :mod:`dispatcher.core._wallclock`).
* Spring forward: wall-clock times inside the gap do not exist. A window starting in the gap (02:30 on
  2026-03-08 in New York) opens at the first instant after the gap (03:00 EDT); one lying wholly in it
  does not open that day. A window is never stretched to make up for lost time.
* Fall back: repeated wall-clock times exist twice. A window covering the repeated hour (01:00-02:00 on
  2026-11-01 in New York) is open during both occurrences, because both read as inside the window on the
  recipient's clock; a window that does not cover it (10:30-11:30) is open once, as on any day.

Millions of recipients share few distinct zone tuples: build one :class:`ZonePlan` per tuple over the
campaign's horizon (or let :class:`ZonePlanner` cache them) and every lookup is a bisect.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise

from dispatcher.core._wallclock import (
    Interval,
    LocalSpan,
    intersect,
    load_zone,
    require_aware,
    require_zone,
    zone_intervals,
)
from dispatcher.errors import InputError

SEARCH_HORIZON = timedelta(days=14)
"""How far ahead to look when the caller gives no end time."""
MAX_SEARCH = timedelta(days=400)
"""Never look further than this, whatever ``not_after`` says: a year covers every DST combination."""

_MIDNIGHT = time(0)
_DAY = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True, slots=True)
class Window:
    """A daily wall-clock interval ``[start, end)``; ``end == time(0)`` means the following midnight."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise InputError(f"window {self} must use wall-clock times without a zone")
        if self.end_offset <= self.start_offset:
            raise InputError(f"window {self} must end after it starts (windows cannot cross midnight)")

    @property
    def start_offset(self) -> timedelta:
        return _since_midnight(self.start)

    @property
    def end_offset(self) -> timedelta:
        return _DAY if self.end == _MIDNIGHT else _since_midnight(self.end)

    def contains(self, moment: time) -> bool:
        return self.start_offset <= _since_midnight(moment) < self.end_offset

    def __str__(self) -> str:
        end = "24:00" if self.end == _MIDNIGHT else self.end.isoformat("minutes")
        return f"{self.start.isoformat('minutes')}-{end}"


def _since_midnight(moment: time) -> timedelta:
    return timedelta(
        hours=moment.hour, minutes=moment.minute, seconds=moment.second, microseconds=moment.microsecond
    )


DEFAULT_WINDOWS: tuple[Window, ...] = (Window(time(10, 30), time(11, 30)), Window(time(15), time(17)))
DEFAULT_QUIET = Window(time(8), time(21))
"""The *allowed* hours; quiet hours are everything outside them."""
DEFAULT_ALLOWED = DEFAULT_QUIET


def _clock(hour: str, minute: str, text: str, *, is_end: bool) -> time:
    hours, minutes = int(hour), int(minute)
    if is_end and (hours, minutes) == (24, 0):
        return _MIDNIGHT
    if hours > 23 or minutes > 59:
        raise InputError(f"invalid time in window {text!r}: use HH:MM between 00:00 and 24:00")
    return time(hours, minutes)


def parse_window(text: str) -> Window:
    """Parse ``HH:MM-HH:MM`` (end may be ``24:00``)."""
    match = _WINDOW_RE.match(text)
    if match is None:
        raise InputError(f"invalid window {text!r}: expected HH:MM-HH:MM, e.g. 10:30-11:30")
    start = _clock(match[1], match[2], text, is_end=False)
    return Window(start, _clock(match[3], match[4], text, is_end=True))


def parse_windows(text: str) -> tuple[Window, ...]:
    """Parse ``10:30-11:30,15:00-17:00`` into sorted windows; overlapping ones are a user mistake."""
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise InputError("no send window given: expected e.g. 10:30-11:30,15:00-17:00")
    windows = sorted((parse_window(part) for part in parts), key=lambda window: window.start_offset)
    for earlier, later in pairwise(windows):
        if later.start_offset < earlier.end_offset:
            raise InputError(f"send windows {earlier} and {later} overlap")
    return tuple(windows)


def clip_windows(windows: Iterable[Window], allowed: Window) -> tuple[Window, ...]:
    """The effective windows: each window cut to the allowed hours, empty ones dropped."""
    clipped: list[Window] = []
    for window in windows:
        start = max(window.start_offset, allowed.start_offset)
        end = min(window.end_offset, allowed.end_offset)
        if start < end:
            clipped.append(Window(_clock_of(start), _clock_of(end)))
    return tuple(clipped)


def _clock_of(offset: timedelta) -> time:
    return (_EPOCH + offset).time()  # 24 h wraps to time(0), which Window reads as the next midnight


def _spans(windows: Iterable[Window], allowed: Window) -> tuple[LocalSpan, ...]:
    return tuple((window.start_offset, window.end_offset) for window in clip_windows(windows, allowed))


@dataclass(frozen=True, slots=True)
class ZonePlan:
    """The send instants of one zone tuple over ``[start, end)``, precomputed so lookups are bisects."""

    zones: tuple[str, ...]
    start: datetime
    end: datetime
    intervals: tuple[Interval, ...]
    _ends: tuple[datetime, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ends", tuple(high for _, high in self.intervals))

    @classmethod
    def build(
        cls,
        zones: Sequence[str],
        start: datetime,
        end: datetime,
        windows: Sequence[Window] = DEFAULT_WINDOWS,
        allowed: Window = DEFAULT_QUIET,
    ) -> ZonePlan:
        """Intersect the per-zone UTC intervals; unknown zones raise (resolve them first)."""
        if not zones:
            raise InputError("at least one time zone is needed to plan sends")
        start, end = require_aware(start, "start"), require_aware(end, "end")
        spans = _spans(windows, allowed)
        intervals: list[Interval] | None = None
        for name in dict.fromkeys(zones):
            own = zone_intervals(require_zone(name), spans, start, end) if end > start else []
            intervals = own if intervals is None else intersect(intervals, own)
        return cls(tuple(dict.fromkeys(zones)), start, end, tuple(intervals or ()))

    def interval_at(self, at: datetime) -> Interval | None:
        """The send interval containing ``at``: a batch released at ``at`` must finish before its end."""
        at = require_aware(at, "at")
        index = bisect_right(self._ends, at)
        if index < len(self.intervals) and self.intervals[index][0] <= at:
            return self.intervals[index]
        return None

    def next_after(self, now: datetime) -> datetime | None:
        """The earliest send instant ``>= now`` within the plan; None when the plan has none left.

        Instants before the plan's ``start`` were never computed, so they are never returned.
        """
        now = require_aware(now, "now")
        index = bisect_right(self._ends, now)
        if index == len(self.intervals):
            return None
        return max(now, self.intervals[index][0])


class ZonePlanner:
    """Caches one :class:`ZonePlan` per zone tuple for a campaign's horizon (pure, but not shareable)."""

    def __init__(
        self,
        start: datetime,
        end: datetime,
        windows: Sequence[Window] = DEFAULT_WINDOWS,
        allowed: Window = DEFAULT_QUIET,
    ) -> None:
        self.start, self.end = require_aware(start, "start"), require_aware(end, "end")
        self.windows, self.allowed = tuple(windows), allowed
        self._plans: dict[tuple[str, ...], ZonePlan] = {}

    def plan(self, zones: Sequence[str]) -> ZonePlan:
        key = tuple(zones)
        plan = self._plans.get(key)
        if plan is None:
            plan = ZonePlan.build(key, self.start, self.end, self.windows, self.allowed)
            self._plans[key] = plan
        return plan

    def next_after(self, zones: Sequence[str], now: datetime) -> datetime | None:
        return self.plan(zones).next_after(now)


def next_send_time(
    now: datetime,
    zones: Sequence[str],
    windows: Sequence[Window] = DEFAULT_WINDOWS,
    allowed: Window = DEFAULT_QUIET,
    *,
    not_after: datetime | None = None,
) -> datetime | None:
    """The earliest instant ``>= now`` and ``< not_after`` inside a window in every zone, else None.

    Without ``not_after`` the search stops after :data:`SEARCH_HORIZON`; it never exceeds
    :data:`MAX_SEARCH`. It proceeds in horizon-sized chunks so a near answer costs little.
    """
    now = require_aware(now, "now")
    limit = now + SEARCH_HORIZON if not_after is None else require_aware(not_after, "not_after")
    limit = min(limit, now + MAX_SEARCH)
    chunk_start = now
    while chunk_start < limit:
        chunk_end = min(chunk_start + SEARCH_HORIZON, limit)
        found = ZonePlan.build(zones, chunk_start, chunk_end, windows, allowed).next_after(chunk_start)
        if found is not None:
            return found
        chunk_start = chunk_end
    return None


def send_intervals(
    start: datetime,
    end: datetime,
    zones: Sequence[str],
    windows: Sequence[Window] = DEFAULT_WINDOWS,
    allowed: Window = DEFAULT_QUIET,
) -> list[Interval]:
    """UTC intervals within ``[start, end)`` when a message may go in every zone (previews, releases)."""
    return list(ZonePlan.build(zones, start, end, windows, allowed).intervals)


def known_zones(names: Iterable[str | None]) -> tuple[str, ...]:
    """Drop unknown and repeated zone names, keeping order (an unknown zone is data, not a crash)."""
    return tuple(dict.fromkeys(name for name in names if name and load_zone(name) is not None))


def resolve_zones(
    number_zones: Sequence[str],
    contact_zone: str | None,
    list_default: str | None,
    windows: Sequence[Window],
    allowed: Window,
    now: datetime,
) -> tuple[str, ...]:
    """Pick the zones a recipient is planned in.

    The number's zones win when they share a send instant within :data:`SEARCH_HORIZON` (a single zone
    always does unless the windows are empty, so it is not searched); otherwise the contact's zone field,
    then the list default. A number whose zones share no instant and that has neither keeps its own zones:
    its message then expires (``no_window_before_end``, counted) rather than going at an hour that is night
    in one of them (UTC would send Sydney's 10:30 window at 21:30 Perth time). UTC only for a recipient
    with no known zone at all. Callers resolving millions of contacts should memoise by arguments.
    """
    from_number = known_zones(number_zones)
    if len(from_number) == 1:
        return from_number
    if from_number and next_send_time(now, from_number, windows, allowed) is not None:
        return from_number
    for fallback in (contact_zone, list_default):
        chosen = known_zones([fallback])
        if chosen:
            return chosen
    return from_number or ("UTC",)


def spread(
    now: datetime,
    zone_lists: Iterable[Sequence[str]],
    windows: Sequence[Window] = DEFAULT_WINDOWS,
    allowed: Window = DEFAULT_QUIET,
    bucket: timedelta = timedelta(hours=1),
    *,
    not_after: datetime | None = None,
) -> dict[datetime, int]:
    """Count recipients by the UTC bucket of their next send instant (buckets aligned to the epoch).

    Recipients with no instant before ``not_after`` (default: :data:`SEARCH_HORIZON`) are not counted:
    the caller reports them as expiring, from the difference with its total.
    """
    if bucket <= timedelta(0):
        raise InputError("spread bucket must be positive")
    now = require_aware(now, "now")
    end = now + SEARCH_HORIZON if not_after is None else require_aware(not_after, "not_after")
    planner = ZonePlanner(now, min(end, now + MAX_SEARCH), windows, allowed)
    counts: dict[datetime, int] = {}
    for zones in zone_lists:
        found = planner.next_after(zones, now)
        if found is not None:
            slot = _EPOCH + (found - _EPOCH) // bucket * bucket
            counts[slot] = counts.get(slot, 0) + 1
    return dict(sorted(counts.items()))
