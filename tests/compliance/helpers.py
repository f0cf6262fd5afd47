"""Oracles and generators for the compliance properties, written from zoneinfo and the SPEC alone.

Nothing here calls the planner: which zones bind a recipient and when it may first get a message are
worked out by reading wall clocks on a quarter-hour grid. Every zone used here has an offset that is a
whole number of quarter hours, tzdata switches on whole quarter hours and the generated windows start and
end on them, so the first send instant at or after ``start`` is ``start`` itself or a grid point.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from dispatcher.pipeline.worker import build_worker
from dispatcher.settings import Settings
from tests.pipeline.test_engine_schedule import inside

QUARTER = timedelta(minutes=15)
HORIZON = timedelta(days=14)  # SPEC: a number's zones are used when they share a send instant this soon

# Raw numbers as a marketer's file holds them (E.164 or with separators), by what phonenumbers gives them.
NUMBERS = {
    "new-york": "+1 212 555 0148",
    "los-angeles": "+1 (415) 555-0172",
    "alaska": "+1 907 555 0133",  # America/Adak and America/Anchorage
    "honolulu": "+1 808 555 0190",
    "newfoundland": "+1 709 555 0123",  # America/Halifax and America/St_Johns
    "regina": "+1 306 555 0111",  # no DST
    "sao-paulo": "+55 11 98765 4321",
    "manaus": "+55 92 98765 4321",
    "australia": "+61 412 345 600",  # eight zones, Cocos to Lord Howe
    "russia": "+7 916 123 4567",  # sixteen zones, Kaliningrad's neighbours to Kamchatka
    "new-zealand": "+64 21 123 456",  # Pacific/Auckland and Pacific/Chatham
    "portugal": "+351 912 345 678",  # Atlantic/Azores and Europe/Lisbon
    "spain": "+34 612 345 678",  # Atlantic/Canary and Europe/Madrid
    "united-kingdom": "+44 7911 123456",
    "paris": "+33 6 12 34 56 78",
    "cairo": "+20 100 123 4567",
    "india": "+91 98765 43210",
    "tokyo": "+81 90 1234 5678",
}

# Zones a contact's own field or a list's default may name (both hemispheres, odd offsets, no DST, DST).
ZONES = (
    "America/New_York",
    "America/Los_Angeles",
    "America/Anchorage",
    "America/St_Johns",
    "America/Sao_Paulo",
    "America/Santiago",
    "Europe/London",
    "Europe/Paris",
    "Europe/Moscow",
    "Africa/Cairo",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Kamchatka",
    "Australia/Sydney",
    "Australia/Adelaide",
    "Australia/Perth",
    "Australia/Lord_Howe",
    "Pacific/Auckland",
    "Pacific/Chatham",
)
JUNK_ZONES = ("Mars/Olympus_Mons", "", "Etc/Unknown")


def _offset(zone: ZoneInfo, at: datetime) -> timedelta:
    offset = at.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _switches(name: str, start: datetime, end: datetime) -> Iterator[datetime]:
    """The instants in ``[start, end)`` where ``name`` changes its UTC offset, to the minute."""
    zone = ZoneInfo(name)
    day = start
    while day < end:
        after = day + timedelta(days=1)
        if _offset(zone, day) != _offset(zone, after):
            low, high = day, after
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                low, high = (low, middle) if _offset(zone, middle) != _offset(zone, low) else (middle, high)
            yield high.replace(second=0, microsecond=0)
        day = after


DST_ZONES = (
    "America/New_York",
    "America/Anchorage",
    "America/St_Johns",
    "America/Santiago",
    "Europe/London",
    "Europe/Paris",
    "Atlantic/Azores",
    "Africa/Cairo",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Pacific/Auckland",
    "Pacific/Chatham",
)
TRANSITIONS: tuple[tuple[str, datetime], ...] = tuple(
    (name, moment)
    for name in DST_ZONES
    for moment in _switches(name, datetime(2026, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC))
)


def known(names: Sequence[str | None]) -> tuple[str, ...]:
    """The names zoneinfo can load, each once, in order."""
    found: list[str] = []
    for name in names:
        if not name or name in found:
            continue
        try:
            ZoneInfo(name)
        except (KeyError, ValueError, OSError):
            continue
        found.append(name)
    return tuple(found)


def first_open(
    zones: Sequence[str], windows: str, allowed: str, start: datetime, limit: datetime
) -> datetime | None:
    """The earliest instant in ``[start, limit)`` inside a window and the allowed hours in every zone."""
    if start < limit and inside(start, zones, windows, allowed):
        return start
    moment = datetime.fromtimestamp((start.timestamp() // 900 + 1) * 900, tz=UTC)
    while moment < limit:
        if inside(moment, zones, windows, allowed):
            return moment
        moment += QUARTER
    return None


def binding_zones(
    number_zones: Sequence[str],
    contact_zone: str | None,
    list_zone: str | None,
    windows: str,
    allowed: str,
    start: datetime,
) -> tuple[str, ...] | None:
    """The zones a send must be inside a window in (SPEC §5: from the number, the contact's field, the
    list's default). A number with several zones binds in all of them when they share a send instant
    within :data:`HORIZON`; otherwise the contact's or the list's zone stands in. None: nothing but the
    number is known and its zones share no instant, a case the SPEC leaves open."""
    from_number = known(number_zones)
    if len(from_number) == 1:
        return from_number
    if from_number and first_open(from_number, windows, allowed, start, start + HORIZON) is not None:
        return from_number
    for fallback in (contact_zone, list_zone):
        chosen = known([fallback])
        if chosen:
            return chosen
    return None


# --- generators -----------------------------------------------------------------------------------------


def _clock(quarter: int) -> str:
    return f"{quarter // 4:02d}:{quarter % 4 * 15:02d}"


@st.composite
def window_texts(draw: st.DrawFn, most: int = 3) -> str:
    """``HH:MM-HH:MM[,…]``: sorted, disjoint, on quarter hours, ``24:00`` allowed as an end."""
    quarters = draw(st.lists(st.integers(0, 96), min_size=2, max_size=2 * most, unique=True).map(sorted))
    pairs = zip(quarters[::2], quarters[1::2], strict=False)
    return ",".join(f"{_clock(low)}-{_clock(high)}" for low, high in pairs)


windows_st = st.one_of(
    st.just("10:30-11:30,15:00-17:00"), st.just("00:00-24:00"), st.just("01:00-03:00"), window_texts()
)
allowed_st = st.one_of(st.just("08:00-21:00"), st.just("00:00-24:00"), window_texts(most=1))
contact_zone_st = st.one_of(st.none(), st.sampled_from(ZONES), st.sampled_from(JUNK_ZONES))


@st.composite
def near_a_switch(draw: st.DrawFn, days: int = 3) -> datetime:
    """An instant within ``days`` of a DST switch somewhere (either hemisphere), to the second."""
    _, moment = draw(st.sampled_from(TRANSITIONS))
    return moment + timedelta(seconds=draw(st.integers(-days * 86400, days * 86400)))


# --- a quick real worker ---------------------------------------------------------------------------------


async def drain_quickly(settings: Settings) -> None:
    """A real arq worker in burst mode that looks at the queue every 50 ms (arq: 500 ms) until it is
    empty, so a test that drains dozens of times does not spend most of its time asleep."""
    worker = build_worker(settings, settings.redis_url or "", burst=True)
    worker.poll_delay_s = 0.05
    try:
        await worker.main()
    finally:
        await worker.close()
